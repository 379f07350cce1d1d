#!/usr/bin/env bash
# Sourced by every stage wrapper and run_all.sh: the student, the files and the folders, each default written once,
# here (the teacher's settings sit in teacher.sh; every other setting defaults in the stage script: --help).
STUDENT_MODEL="${STUDENT_MODEL:-BAAI/bge-reranker-v2-m3}"  # a cross-encoder, a plain encoder (a one-logit head is added) or a yes/no LLM reranker (Qwen/Qwen3-Reranker-0.6B)
TRAIN_FILES="${TRAIN_FILES:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/train.jsonl}"  # MTEB reranking files or candidate lists, comma-separated
TEST_FILES="${TEST_FILES:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"     # scored in stage 1 too; evaluation and export measure the first
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/reranker}"  # teacher_scores/, training_rows.jsonl, model/, evaluation/, export/
TRAINING_ROWS="${TRAINING_ROWS:-$OUTPUT_DIR/training_rows.jsonl}"  # stage 2 writes them, stage 3 reads them
MODEL_DIR="${MODEL_DIR:-$OUTPUT_DIR/model}"          # the trained student (and its checkpoints); export writes into it
EVAL_DIR="${EVAL_DIR:-$OUTPUT_DIR/evaluation}"       # results.json, results.md, score_scatter.png
FIRST_TEST_FILE="${TEST_FILES%%,*}"
TRAIN_SCORES="${TRAIN_SCORES:-$(score_files "$OUTPUT_DIR/teacher_scores" "$TRAIN_FILES")}"    # stage 1's scores of them
TEST_SCORES="${TEST_SCORES:-$(score_files "$OUTPUT_DIR/teacher_scores" "$FIRST_TEST_FILE")}"
