#!/usr/bin/env bash
# Sourced by every stage wrapper and run_all.sh: the data, the models and the folders, each default written once,
# here (every other setting defaults in the stage script: --help).
# The corpus is every passage of the files named (pooled, as Milvus-Optimization pools them); the queries are those
# of the first list. Train on one set's queries, evaluate on another's, over the same corpus.
TRAIN_CORPUS="${TRAIN_CORPUS:-$RAGDISTILL_ROOT/data/wikiqa/train.jsonl.gz}"  # MTEB files, candidate lists or a BEIR folder (no qrels: label-free)
TEST_CORPUS="${TEST_CORPUS:-$RAGDISTILL_ROOT/data/wikiqa/test.jsonl.gz}"     # the held-out queries
TRAIN_DISTRACTORS="${TRAIN_DISTRACTORS-$RAGDISTILL_ROOT/data/wikiqa/dev.jsonl.gz,$RAGDISTILL_ROOT/data/wikiqa/test.jsonl.gz}"  # more passages, not their queries
TEST_DISTRACTORS="${TEST_DISTRACTORS-$RAGDISTILL_ROOT/data/wikiqa/train.jsonl.gz,$RAGDISTILL_ROOT/data/wikiqa/dev.jsonl.gz}"
EMBEDDER="${EMBEDDER-$RAGDISTILL_ROOT/output/embedding/model}"  # Embedding-Distillation's student; empty = BM25 only
TEACHER_MODEL="${TEACHER_MODEL:-}"          # label-free grading (no labels, or a teacher-graded table beside them)
BACKEND="${BACKEND:-auto}"                  # the teacher's: auto | vllm | torch | bi-encoder (an embedder as the teacher)
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/query_expansion}"  # rewriter/, cache/, query_expansion.{json,md}
REWRITER_DIR="${REWRITER_DIR:-$OUTPUT_DIR/rewriter}"  # train.sh writes it, evaluation.sh and Milvus search.sh --rewriter read it
CACHE_DIR="${CACHE_DIR:-$OUTPUT_DIR/cache}"           # the embedder's corpus vectors, shared by both stages

# The flags both stages share, from the variables above (only those set).
common_args() {
  local args=(--cache_dir "$CACHE_DIR")
  if [ -n "$EMBEDDER" ]; then args+=(--embedder "$EMBEDDER"); fi
  if [ -n "$TEACHER_MODEL" ]; then args+=(--teacher_model "$TEACHER_MODEL" --backend "$BACKEND"); fi
  printf '%s\n' "${args[@]}"
}
