#!/usr/bin/env bash
# Sourced by every stage wrapper and run_all.sh: the student, the files and the folders, each default written once,
# here (the teacher's settings sit in teacher.sh; every other setting defaults in the stage script: --help).
STUDENT_MODEL="${STUDENT_MODEL:-BAAI/bge-m3}"  # any SentenceTransformer (Hugging Face id or local folder), or an LLM embedder (Qwen/Qwen3-Embedding-0.6B)
TRAIN_FILES="${TRAIN_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/validation.jsonl}"  # MTEB reranking files or candidate lists, comma-separated
TEST_FILES="${TEST_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/test.jsonl}"  # in-domain test files, scored in stage 1 too; export measures the first
OUT_OF_DOMAIN_FILES="${OUT_OF_DOMAIN_FILES-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"  # the no-forgetting check; set empty for none
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/embedding}"  # teacher_scores/, training_rows.jsonl, model/, evaluation/, export/
TRAINING_ROWS="${TRAINING_ROWS:-$OUTPUT_DIR/training_rows.jsonl}"  # stages 1-2 write them, stage 3 reads them
MODEL_DIR="${MODEL_DIR:-$OUTPUT_DIR/model}"          # the trained student (and its checkpoints); export writes into it
EVAL_DIR="${EVAL_DIR:-$OUTPUT_DIR/evaluation}"       # results.json, results.md, scatter PNGs
FIRST_TEST_FILE="${TEST_FILES%%,*}"
ALL_TEST_FILES="$TEST_FILES${OUT_OF_DOMAIN_FILES:+,$OUT_OF_DOMAIN_FILES}"
