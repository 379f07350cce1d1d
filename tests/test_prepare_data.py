"""scripts/prepare_data.py and ragdistill.data.{hub,datasets,beir,bm25}, on local files only (no network).

The download step is replaced by local folders laid out like the hub repos (--from_dir), or by fakes of the hub
clients' snapshot functions that copy the files matching the requested patterns out of such a folder; everything
after it (split discovery, decompression, parquet reading, validation, atomic writes, counts) runs for real.
"""

from __future__ import annotations

import fnmatch
import gzip
import http.server
import importlib.util
import json
import math
import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json, read_jsonl
from ragdistill.data import datasets, hub
from ragdistill.data.bm25 import BM25, tokenize
from tests.builders import repo_env

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "prepare_data.py"

ROWS = {
    "test": [{"query": f"test query {i}", "positive": [f"right answer {i}"], "negative": [f"wrong {i}a", f"wrong {i}b"]}
             for i in range(4)],
    "validation": [{"query": f"validation query {i}", "positive": [f"good {i}", f"also good {i}"],
                    "negative": [f"bad {i}"]} for i in range(3)],
}


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_data_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def run_script(monkeypatch, *args: str):
    """Run the script's main in this process, as `python scripts/prepare_data.py ARGS` would (exit codes kept)."""
    module = _load_script()
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    module.run_main(module.main)


def printed_table(out: str) -> dict[tuple[str, str], list[str]]:
    """(dataset, split) -> [queries, avg positives, avg negatives, skipped] from the printed counts table."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) == 7 and cells[2].replace(",", "").isdigit():
            rows[(cells[0], cells[1])] = cells[2:6]
    return rows


def write_gz(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(json.dumps(r) for r in rows) + "\n").encode(), mtime=0))
    return path


def write_parquet(path: Path, rows, columns=("query", "positive", "negative")) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: [row[column] for row in rows] for column in columns}), path)
    return path


def jsonl_repo(root: Path) -> Path:
    """A dataset repo as MTEB publishes it: <split>.jsonl.gz at the top."""
    for split, rows in ROWS.items():
        write_gz(root / f"{split}.jsonl.gz", rows)
    (root / "README.md").write_text("card\n")
    return root


def parquet_repo(root: Path) -> Path:
    """A converted revision: default/<split>/0000.parquet (and an old copy the reader must not double-count)."""
    for split, rows in ROWS.items():
        write_parquet(root / "default" / split / "0000.parquet", rows)
        write_parquet(root / "zz-old" / f"json-{split}.parquet", rows)
    return root


# ----------------------------------------------------------------------------------------------------------------
# MTEB sets from local copies
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", [jsonl_repo, parquet_repo])
def test_local_copy_is_decompressed_validated_written_and_counted(tmp_path, monkeypatch, capsys, layout):
    layout(tmp_path / "hub" / "scidocs-reranking")
    out = tmp_path / "out"
    run_script(monkeypatch, "--from_dir", str(tmp_path / "hub"), "--datasets", "mteb/scidocs-reranking",
               "--output_dir", str(out))

    for split, rows in ROWS.items():
        written = out / "scidocs-reranking" / f"{split}.jsonl"
        assert written.read_bytes()[:1] == b"{"  # plain JSON lines, not gzip
        assert read_jsonl(written) == rows
    table = printed_table(capsys.readouterr().out)
    assert table[("scidocs-reranking", "test")] == ["4", "1.00", "2.00", "0"]
    assert table[("scidocs-reranking", "validation")] == ["3", "2.00", "1.00", "0"]
    record = read_json(out / "scidocs-reranking" / "prepare_data.json")
    assert record["splits"]["test"]["queries"] == 4 and record["splits"]["validation"]["avg_positives"] == 2.0
    assert len(record["splits"]["test"]["sources"]) == 1  # the old parquet copy was not read as a second shard
    assert (out / "scidocs-reranking" / "prepare_data.md").read_text().count("| scidocs-reranking |") == 2


def test_bundled_data_as_a_local_run(tmp_path, monkeypatch, capsys):
    run_script(monkeypatch, "--from_dir", str(REPO / "data"), "--datasets", "wikiqa,trecqa",
               "--output_dir", str(tmp_path))
    table = printed_table(capsys.readouterr().out)
    # data/README.md's counts
    assert {split: table[("wikiqa", split)][0] for split in ("train", "dev", "test")} == \
        {"train": "857", "dev": "122", "test": "237"}
    assert {split: table[("trecqa", split)][0] for split in ("dev", "test")} == {"dev": "65", "test": "68"}
    assert read_json(tmp_path / "wikiqa" / "prepare_data.json")["splits"]["train"]["queries"] == 857


def test_splits_option_and_missing_split(tmp_path, monkeypatch):
    jsonl_repo(tmp_path / "hub" / "x")
    run_script(monkeypatch, "--from_dir", str(tmp_path / "hub"), "--datasets", "x", "--splits", "test",
               "--output_dir", str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out" / "x").glob("*.jsonl")) == ["test.jsonl"]
    # a folder holding the files directly works too when one dataset is asked for
    run_script(monkeypatch, "--from_dir", str(tmp_path / "hub" / "x"), "--datasets", "x", "--splits", "validation",
               "--output_dir", str(tmp_path / "out"))
    assert read_jsonl(tmp_path / "out" / "x" / "validation.jsonl") == ROWS["validation"]
    assert set(read_json(tmp_path / "out" / "x" / "prepare_data.json")["splits"]) == {"test", "validation"}
    with pytest.raises(InputError, match=r"split\(s\) train \(splits found: test, validation"):
        datasets.prepare_dataset("x", tmp_path / "hub" / "x", tmp_path / "out", splits=["train"])


def test_bad_row_names_file_and_line_and_leaves_no_output(tmp_path, monkeypatch, capsys):
    rows = [*ROWS["test"][:2], {"query": "q", "positive": [], "negative": ["n"]}, ROWS["test"][3]]
    source = write_gz(tmp_path / "hub" / "x" / "test.jsonl.gz", rows)
    with pytest.raises(SystemExit) as exit_info:
        run_script(monkeypatch, "--from_dir", str(tmp_path / "hub"), "--datasets", "x", "--output_dir",
                   str(tmp_path / "out"))
    assert exit_info.value.code == 2
    assert f"{source}:3: empty list: 'positive'" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("*.jsonl"))  # nothing half-written

    run_script(monkeypatch, "--from_dir", str(tmp_path / "hub"), "--datasets", "x", "--output_dir",
               str(tmp_path / "out"), "--skip_invalid")
    assert len(read_jsonl(tmp_path / "out" / "x" / "test.jsonl")) == 3
    assert read_json(tmp_path / "out" / "x" / "prepare_data.json")["splits"]["test"]["skipped"] == 1


def test_parquet_without_reranking_columns_is_a_clear_error(tmp_path):
    path = write_parquet(tmp_path / "x" / "test-00000-of-00001.parquet",
                         [{"query-id": "1", "corpus-id": "2", "score": 1}], columns=("query-id", "corpus-id", "score"))
    with pytest.raises(InputError, match="lack .*'positive'.*expected the MTEB reranking columns") as info:
        datasets.prepare_dataset("x", tmp_path / "x", tmp_path / "out")
    assert info.value.path == str(path)


def test_split_names_from_repo_paths():
    cases = {"test.jsonl.gz": "test", "data/train.jsonl": "train", "data/test-00000-of-00002.parquet": "test",
             "default/validation/0000.parquet": "validation", "mteb--x/json-dev.parquet": "dev", "README.md": None,
             "test.parquet": "test"}
    assert {path: datasets.split_of(Path(path)) for path in cases} == cases


def test_repo_ids_per_source():
    assert hub.repo_id("scidocs-reranking", "modelscope") == "MTEB/scidocs-reranking"
    assert hub.repo_id("mteb/scidocs-reranking", "modelscope") == "MTEB/scidocs-reranking"
    assert hub.repo_id("MTEB/scidocs-reranking", "hf") == "mteb/scidocs-reranking"
    assert hub.repo_id("someone/my-set", "hf") == "someone/my-set"


# ----------------------------------------------------------------------------------------------------------------
# The download step, with the hub clients replaced by local copies that honour the file patterns
# ----------------------------------------------------------------------------------------------------------------
def _fake_hub(remote: Path, cache: Path, calls: list):
    def copy_matching(repo: str, patterns) -> str:
        target = cache / repo.replace("/", "--")
        for path in remote.rglob("*"):
            relative = path.relative_to(remote).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target / relative)
        return str(target)

    def hf_snapshot_download(repo_id, *, repo_type=None, allow_patterns=None, **kwargs):
        calls.append({"repo": repo_id, "repo_type": repo_type, "patterns": allow_patterns, **kwargs})
        return copy_matching(repo_id, allow_patterns)

    def ms_dataset_snapshot_download(dataset_id, allow_file_pattern=None, **kwargs):
        calls.append({"repo": dataset_id, "patterns": allow_file_pattern, **kwargs})
        return copy_matching(dataset_id, allow_file_pattern)

    return hf_snapshot_download, ms_dataset_snapshot_download


@pytest.mark.parametrize(("source", "layout"), [("hf", jsonl_repo), ("modelscope", parquet_repo)])
def test_download_fetches_only_wanted_split(tmp_path, monkeypatch, source, layout):
    import huggingface_hub

    # the module, not the function of the same name that modelscope.hub exports
    ms = importlib.import_module("modelscope.hub.snapshot_download")

    layout(tmp_path / "remote")
    calls: list = []
    hf_fake, ms_fake = _fake_hub(tmp_path / "remote", tmp_path / "cache", calls)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hf_fake)
    monkeypatch.setattr(ms, "dataset_snapshot_download", ms_fake)
    monkeypatch.setattr(hub, "unreachable_reason", lambda url, timeout: None)  # "the network works"
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)

    run_script(monkeypatch, "--source", source, "--datasets", "scidocs-reranking", "--splits", "test",
               "--output_dir", str(tmp_path / "out"))
    assert calls[0]["repo"] == ("mteb/scidocs-reranking" if source == "hf" else "MTEB/scidocs-reranking")
    if source == "hf":
        assert calls[0]["repo_type"] == "dataset" and calls[0]["local_files_only"] is False
    fetched = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert fetched and not any("validation" in name for name in fetched)  # only the wanted split came down
    assert read_jsonl(tmp_path / "out" / "scidocs-reranking" / "test.jsonl") == ROWS["test"]
    record = read_json(tmp_path / "out" / "scidocs-reranking" / "prepare_data.json")["splits"]["test"]
    assert record["source"] == source and record["repo"] == calls[0]["repo"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("source", ["hf-offline", "hf", "modelscope"])
def test_no_network_fails_fast_and_clearly(tmp_path, source):
    """Exit 1 with a message naming the data set, the source and the way out; the probe (not the hub clients'
    retry loops) is what fails, and the subprocess timeout guards against a hang."""
    env = repo_env(HF_HOME=str(tmp_path / "hf"), MODELSCOPE_CACHE=str(tmp_path / "ms"))
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(variable, None)
    if source == "hf-offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:  # nothing listens there: the connection is refused, as without network
        port = _closed_port()
        env["HF_ENDPOINT"], env["MODELSCOPE_DOMAIN"] = f"http://127.0.0.1:{port}", f"127.0.0.1:{port}"
    result = subprocess.run([sys.executable, str(SCRIPT), "--source", source.split("-")[0], "--datasets",
                             "scidocs-reranking", "--output_dir", str(tmp_path / "out")],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    repo = "MTEB/scidocs-reranking" if source == "modelscope" else "mteb/scidocs-reranking"
    label = "ModelScope" if source == "modelscope" else "Hugging Face hub"
    assert message.startswith(f"error: cannot download dataset {repo} from ") and label in message
    assert ("offline mode is on" if source == "hf-offline" else "Connection refused") in message
    assert "--source " in message and "--from_dir" in message
    assert not (tmp_path / "out").exists()


def test_probe_times_out_on_a_silent_server_and_accepts_any_http_answer():
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        reason = hub.unreachable_reason(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
    assert reason is not None and "timed out" in reason

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert hub.unreachable_reason(f"http://127.0.0.1:{server.server_port}", timeout=5) is None
    finally:
        server.shutdown()


# ----------------------------------------------------------------------------------------------------------------
# BM25
# ----------------------------------------------------------------------------------------------------------------
CORPUS = [
    "Paris is the capital and largest city of France.",
    "France borders Spain, Italy and Germany.",
    "Berlin is the capital of Germany.",
    "The capital of Spain is Madrid, a large city.",
    "Bananas are yellow and rich in potassium.",
    "A cross encoder reads the query and the passage together.",
    "An embedding model maps each text to a vector.",
    "Madrid and Paris are large European capitals; Paris is in France.",
    "Vectors of similar texts lie close together.",
    "Potassium is a chemical element.",
]


def reference_bm25(corpus, query, k1=0.9, b=0.4):
    """The formula, term by term, straight from its definition."""
    docs = [tokenize(text) for text in corpus]
    avgdl = sum(map(len, docs)) / len(docs)
    scores = []
    for doc in docs:
        tf, score = Counter(doc), 0.0
        for term in tokenize(query):
            df = sum(term in d for d in docs)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            score += idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(score)
    return scores


def test_bm25_scores_match_the_formula_and_search_orders_them():
    queries = ["capital of France", "large city city", "potassium bananas", "vector text model", "unknownword"]
    index = BM25(CORPUS)
    for query, row in zip(queries, index.scores(queries)):
        assert row.tolist() == pytest.approx(reference_bm25(CORPUS, query), rel=1e-5, abs=1e-6)
    for query, hits in zip(queries, index.search(queries, k=3, batch_size=2)):
        expected = reference_bm25(CORPUS, query)
        ranked = sorted((i for i in range(len(CORPUS)) if expected[i] > 0), key=lambda i: (-expected[i], i))[:3]
        assert [doc for doc, _ in hits] == ranked
    assert index.search(["unknownword"], k=3) == [[]]


def test_bm25_ties_go_to_the_lower_document_index():
    index = BM25(["alpha beta", "gamma", "alpha beta", "alpha beta", "delta"])
    assert [doc for doc, _ in index.search(["alpha"], k=2)[0]] == [0, 2]


# ----------------------------------------------------------------------------------------------------------------
# BEIR folder -> MTEB reranking
# ----------------------------------------------------------------------------------------------------------------
def make_beir(root: Path) -> Path:
    corpus = [{"_id": f"d{i}", "title": "", "text": text} for i, text in enumerate(CORPUS)]
    corpus[2]["title"] = "Germany"
    queries = [{"_id": "q1", "text": "capital of France"}, {"_id": "q2", "text": "potassium bananas"},
               {"_id": "q3", "text": "capital of Germany"}, {"_id": "d8", "text": "vectors of similar texts"}]
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        "q1\td0\t1\nq1\td7\t2\n"   # two positives
        "q2\td4\t1\n"               # one positive
        "q3\td2\t0\n"               # judged, but not relevant: no positive, skipped
        "d8\td6\t1\n")              # a query whose own id is a document: d8 must never be its candidate
    (root / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td9\t1\n")
    return root


def test_beir_with_bm25(tmp_path, monkeypatch, capsys):
    beir = make_beir(tmp_path / "toy-beir")
    run_script(monkeypatch, "--beir_dir", str(beir), "--retriever", "bm25", "--candidates_per_query", "4",
               "--splits", "test", "--output_dir", str(tmp_path / "out"))
    rows = read_jsonl(tmp_path / "out" / "toy-beir" / "test.jsonl")
    assert [row["query"] for row in rows] == ["capital of France", "potassium bananas", "vectors of similar texts"]
    texts = [text if i != 2 else f"Germany {text}" for i, text in enumerate(CORPUS)]
    for row, (query, positives, own_id) in zip(rows, [("capital of France", [0, 7], None),
                                                     ("potassium bananas", [4], None),
                                                     ("vectors of similar texts", [6], 8)]):
        assert row["positive"] == [texts[i] for i in positives]
        scores = reference_bm25(texts, query)
        top = [i for i in sorted(range(len(texts)), key=lambda i: (-scores[i], i)) if scores[i] > 0 and i != own_id]
        assert row["negative"] == [texts[i] for i in top[:4] if i not in positives]
    record = read_json(tmp_path / "out" / "toy-beir" / "prepare_data.json")["splits"]["test"]
    assert record["queries"] == 3 and record["skipped"] == 1 and record["details"]["skipped_no_positive"] == 1
    assert record["retriever"] == "bm25" and record["candidates_per_query"] == 4
    assert "retriever_recall@4" in capsys.readouterr().out


def test_beir_with_a_sentence_transformer(tmp_path, monkeypatch, tiny_models):
    beir = make_beir(tmp_path / "toy-beir")
    run_script(monkeypatch, "--beir_dir", str(beir), "--retriever", str(tiny_models["bert"]),
               "--candidates_per_query", "5", "--output_dir", str(tmp_path / "out"), "--name", "toy-dense")
    texts = {text if i != 2 else f"Germany {text}" for i, text in enumerate(CORPUS)}
    for split, queries in (("test", 3), ("dev", 1)):
        rows = read_jsonl(tmp_path / "out" / "toy-dense" / f"{split}.jsonl")
        assert len(rows) == queries
        for row in rows:
            assert set(row["negative"]) <= texts and not set(row["negative"]) & set(row["positive"])
            assert 5 - len(row["positive"]) <= len(row["negative"]) <= 5
    own = read_jsonl(tmp_path / "out" / "toy-dense" / "test.jsonl")[2]
    assert CORPUS[8] not in own["negative"]


def test_beir_bad_qrels_names_file_and_line(tmp_path, monkeypatch, capsys):
    beir = make_beir(tmp_path / "b")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\tnope\t1\n")
    with pytest.raises(SystemExit) as info:
        run_script(monkeypatch, "--beir_dir", str(beir), "--splits", "test", "--output_dir", str(tmp_path / "o"))
    assert info.value.code == 2
    assert f"{beir / 'qrels' / 'test.tsv'}:3: corpus-id 'nope' is not in corpus.jsonl" in capsys.readouterr().err
