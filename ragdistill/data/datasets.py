"""Getting reranking data into the MTEB reranking format the stage scripts read.

Two ways in:
- MTEB reranking sets by name (e.g. stackoverflowdupquestions-reranking), from ModelScope (`MTEB/<name>`) or the
  Hugging Face hub (`mteb/<name>`). A dataset repo holds one `<split>.jsonl.gz` per split, or, in converted
  revisions, parquet files with the columns query / positive / negative; both are read. Every row is validated
  and written, decompressed, to `<output_dir>/<name>/<split>.jsonl`.
- A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): a first-stage retriever (BM25 or any
  SentenceTransformer) takes the top candidates per query; qrels give the positives, the other candidates become
  the negatives.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.hashing import file_sha256
from ragdistill.core.jsonl import atomic_open, iter_jsonl, read_json, write_json, write_jsonl
from ragdistill.core.mteb import RerankingSample, validate_sample
from ragdistill.core.report import to_markdown, to_text

logger = logging.getLogger(__name__)

SOURCES = ("modelscope", "hf")
SOURCE_LABELS = {"modelscope": "ModelScope", "hf": "the Hugging Face hub"}
# The sets the reference results use: Reranker-Distillation trains on StackOverflowDupQuestions; Embedding-Distillation
# trains on SciDocsRR validation and tests on SciDocsRR test (in-domain) and StackOverflowDupQuestions test.
DEFAULT_DATASETS = ("stackoverflowdupquestions-reranking", "scidocs-reranking")


class DownloadError(Exception):
    """A data set could not be fetched; the message names the data set, the source, and what to do instead."""


# ----------------------------------------------------------------------------------------------------------------
# Names and sources
# ----------------------------------------------------------------------------------------------------------------
def short_name(name: str) -> str:
    """'mteb/scidocs-reranking' -> 'scidocs-reranking' (the folder name under the output directory)."""
    return name.strip().rstrip("/").split("/")[-1]


def repo_id(name: str, source: str) -> str:
    """The dataset repo: MTEB's sets live under 'MTEB/' on ModelScope and 'mteb/' on the Hugging Face hub."""
    name = name.strip().rstrip("/")
    org, _, base = name.rpartition("/")
    if not org or org.lower() == "mteb":
        org = "MTEB" if source == "modelscope" else "mteb"
    return f"{org}/{base}"


def source_endpoint(source: str) -> str:
    """The site a source downloads from (HF_ENDPOINT and MODELSCOPE_DOMAIN move them, e.g. to a mirror)."""
    if source == "hf":
        from huggingface_hub import constants

        return constants.ENDPOINT.rstrip("/")
    if source == "modelscope":
        from modelscope.hub.utils.utils import get_endpoint

        return get_endpoint().rstrip("/")
    raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")


def dataset_web_page(name: str, source: str) -> str:
    repo, endpoint = repo_id(name, source), source_endpoint(source)
    return f"{endpoint}/datasets/{repo}/files" if source == "modelscope" else f"{endpoint}/datasets/{repo}/tree/main"


def unreachable_reason(url: str, timeout: float) -> str | None:
    """None if the server at `url` answers anything (any HTTP status) within `timeout` seconds, else why not.

    The hub clients retry with back-off for tens of seconds when there is no network; one bounded probe first turns
    that into a clear failure in seconds. The probe runs in a thread so a stuck DNS lookup is bounded too. Proxy
    settings in the environment (HTTPS_PROXY, ...) are used, as the clients use them.
    """
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered, if only with an error status: the network works
        except (urllib.error.URLError, OSError, ValueError) as exc:
            outcome.append(str(getattr(exc, "reason", exc)) or type(exc).__name__)
        except Exception as exc:  # e.g. http.client.BadStatusLine: something answered, but not an HTTP server
            outcome.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def _allow_patterns(splits: Sequence[str] | None) -> list[str]:
    """File patterns (fnmatch: '*' also matches '/') that fetch only the data files of the wanted splits."""
    if not splits:
        return ["*.jsonl.gz", "*.jsonl", "*.parquet"]
    return [pattern for split in splits for pattern in (f"{split}.jsonl.gz", f"{split}.jsonl", f"*{split}*.parquet")]


def _advice(name: str, source: str) -> str:
    other = "hf" if source == "modelscope" else "modelscope"
    return (f"Try the other source (--source {other}), or download the data files (e.g. test.jsonl.gz) by hand from "
            f"{dataset_web_page(name, source)} into DIR/{short_name(name)}/ and run again with --from_dir DIR.")


def _failed(name: str, source: str, exc: Exception) -> DownloadError:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return DownloadError(f"downloading dataset {repo_id(name, source)} from {SOURCE_LABELS[source]} failed: "
                         f"{type(exc).__name__}: {first_line}. {_advice(name, source)}")


def download_snapshot(name: str, source: str = "modelscope", splits: Sequence[str] | None = None,
                      revision: str | None = None, cache_dir: str | None = None,
                      connect_timeout: float = 5.0) -> Path:
    """Fetch the data files of a dataset repo (only the wanted splits) into the source's cache; return the folder.

    Without network this fails within about `connect_timeout` seconds with a DownloadError. From the Hugging Face
    hub a copy already in its cache is used then (and always under HF_HUB_OFFLINE=1).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    repo, label, endpoint = repo_id(name, source), SOURCE_LABELS[source], source_endpoint(source)
    patterns = _allow_patterns(splits)
    if source == "hf":
        from huggingface_hub import constants, snapshot_download

        offline = "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
        reason = offline if constants.HF_HUB_OFFLINE else unreachable_reason(endpoint, connect_timeout)
        try:
            return Path(snapshot_download(repo, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                                          allow_patterns=patterns, local_files_only=reason is not None,
                                          etag_timeout=connect_timeout))
        except Exception as exc:
            if reason is not None:
                raise DownloadError(f"cannot download dataset {repo} from {label} ({endpoint}): {reason}, and it is "
                                    f"not in the local cache. {_advice(name, source)}") from None
            raise _failed(name, source, exc) from None
    reason = unreachable_reason(endpoint, connect_timeout)
    if reason is not None:
        raise DownloadError(f"cannot download dataset {repo} from {label}: {endpoint} is unreachable ({reason}). "
                            f"{_advice(name, source)}")
    from modelscope.hub.snapshot_download import dataset_snapshot_download

    # Only the arguments every modelscope >= 1.20 accepts; the default revision is the repo's 'master'.
    options = {"allow_file_pattern": patterns}
    if revision:
        options["revision"] = revision
    if cache_dir:
        options["cache_dir"] = cache_dir
    try:
        return Path(dataset_snapshot_download(repo, **options))
    except Exception as exc:
        raise _failed(name, source, exc) from None


def local_dataset_folder(from_dir: str | os.PathLike, name: str, single: bool) -> Path:
    """The folder of a local copy: FROM_DIR/<name>/ (laid out like the dataset repo), or FROM_DIR itself when
    only one dataset is asked for and FROM_DIR holds data files directly."""
    root = Path(from_dir)
    if not root.is_dir():
        raise InputError(root, "--from_dir is not a folder")
    candidate = root / short_name(name)
    if candidate.is_dir():
        return candidate
    if single and find_split_files(root):
        return root
    raise InputError(root, f"no folder '{short_name(name)}' here (expected {candidate}/<split>.jsonl.gz or parquet "
                           "files, laid out like the dataset repo)")


# ----------------------------------------------------------------------------------------------------------------
# Split files in a dataset folder
# ----------------------------------------------------------------------------------------------------------------
def split_of(relative: Path) -> str | None:
    """The split a data file belongs to, from its path in the repo; None for files that are not data.

    test.jsonl.gz -> test; data/test-00000-of-00001.parquet -> test; default/test/0000.parquet -> test;
    <repo>/json-test.parquet -> test (older converted revisions).
    """
    name = relative.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or None
    if name.endswith(".parquet"):
        stem = re.sub(r"-\d+-of-\d+$", "", name[: -len(".parquet")])
        if stem.isdigit():  # a numbered shard: the folder is the split
            return relative.parent.name or None
        # Hub split names are word characters only, so whatever precedes a '-' is a prefix, not the split.
        return stem.split("-")[-1] or None
    return None


def find_split_files(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """Map split -> its data files in a dataset folder (hidden folders such as .cache are ignored).

    JSON lines win over parquet for the same split (they are the original MTEB files); parquet shards of one split
    must sit in one folder; when several folders hold the split (converted revisions keep old copies), the first
    in sorted order is used.
    """
    folder = Path(folder)
    jsonl: dict[str, Path] = {}
    parquet: dict[str, dict[Path, list[Path]]] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        split = split_of(relative)
        if split is None:
            continue
        if path.name.endswith(".parquet"):
            parquet.setdefault(split, {}).setdefault(path.parent, []).append(path)
        elif split not in jsonl or path.name.endswith(".gz"):
            jsonl[split] = path
    found = {split: [path] for split, path in jsonl.items()}
    for split, by_folder in parquet.items():
        if split not in found:
            found[split] = by_folder[sorted(by_folder)[0]]
    return dict(sorted(found.items()))


def iter_rows(files: Sequence[Path]) -> Iterator[tuple[Path, int, object]]:
    """(file, line or row number, parsed row) for JSON lines (.jsonl, .jsonl.gz) and parquet files in order."""
    for path in files:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            try:
                table = pq.ParquetFile(path)
            except Exception as exc:
                raise InputError(path, f"not a readable parquet file ({exc})") from None
            columns = table.schema_arrow.names
            missing = [key for key in ("query", "positive", "negative") if key not in columns]
            if missing:
                raise InputError(path, f"parquet columns {columns} lack {missing}: expected the MTEB reranking "
                                       "columns query, positive, negative")
            row_number = 0
            for batch in table.iter_batches(batch_size=1024, columns=["query", "positive", "negative"]):
                for row in batch.to_pylist():
                    row_number += 1
                    yield path, row_number, row
            if row_number == 0:
                raise InputError(path, "parquet file has no rows")
        else:
            for line, obj in iter_jsonl(path):
                yield path, line, obj


# ----------------------------------------------------------------------------------------------------------------
# Writing and counting
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class SplitCounts:
    """What one prepared split holds."""

    dataset: str
    split: str
    path: str
    queries: int = 0
    positives: int = 0
    negatives: int = 0
    skipped: int = 0
    sources: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def avg_positives(self) -> float:
        return self.positives / self.queries if self.queries else 0.0

    @property
    def avg_negatives(self) -> float:
        return self.negatives / self.queries if self.queries else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "avg_positives": self.avg_positives, "avg_negatives": self.avg_negatives}


def write_samples(samples, output_path: Path, counts: SplitCounts, source: Path) -> SplitCounts:
    """Write samples atomically to `output_path` (nothing is left there if anything fails), counting them."""

    def rows():
        for sample in samples:
            counts.queries += 1
            counts.positives += len(sample.positive)
            counts.negatives += len(sample.negative)
            yield sample.as_dict()

    write_jsonl(output_path, rows())
    if counts.queries == 0:
        output_path.unlink()
        raise InputError(source, f"no valid rows left to write to {output_path}")
    return counts


def prepare_split(dataset: str, split: str, files: Sequence[Path], output_path: Path,
                  skip_invalid: bool = False) -> SplitCounts:
    """Read one split's files, validate every row (InputError names file and line), write it as JSON lines."""
    skips = SkipCounter(skip_invalid)
    counts = SplitCounts(dataset=dataset, split=split, path=str(output_path),
                         sources=[{"file": str(path), "sha256": file_sha256(path)} for path in files])

    def samples():
        for path, line, obj in tqdm(iter_rows(files), desc=f"{dataset}/{split}", unit=" rows", leave=False):
            try:
                yield validate_sample(obj, path, line)
            except InputError as error:
                skips.handle(error)

    try:
        write_samples(samples(), output_path, counts, files[0])
    except InputError as error:
        if skip_invalid or error.line is None:
            raise
        raise InputError(error.path, f"{error.problem} (--skip_invalid skips and counts such rows)",
                         error.line) from None
    counts.skipped = skips.total
    if skips.total:
        logger.warning(skips.summary())
    return counts


def prepare_dataset(name: str, folder: str | os.PathLike, output_dir: str | os.PathLike,
                    splits: Sequence[str] | None = None, skip_invalid: bool = False,
                    provenance: dict | None = None) -> list[SplitCounts]:
    """Convert every wanted split of a dataset folder (a repo snapshot or a local copy) into
    `<output_dir>/<name>/<split>.jsonl`, and record where each file came from in prepare_data.json / .md there."""
    folder = Path(folder)
    found = find_split_files(folder)
    wanted = list(splits) if splits else list(found)
    missing = [split for split in wanted if split not in found]
    if missing or not wanted:
        listing = ", ".join(sorted(found)) or "no data files"
        raise InputError(folder, f"dataset {name}: no data file for split(s) {', '.join(missing) or '(any)'} "
                                 f"(splits found: {listing}; expected <split>.jsonl.gz, <split>.jsonl or parquet)")
    target = Path(output_dir) / short_name(name)
    results = [prepare_split(short_name(name), split, found[split], target / f"{split}.jsonl", skip_invalid)
               for split in wanted]
    record_provenance(target, results, provenance or {"source": "local folder", "folder": str(folder)})
    return results


def record_provenance(target: Path, results: Sequence[SplitCounts], provenance: dict) -> None:
    """Merge this run's splits into <target>/prepare_data.json (earlier splits stay) and render it as Markdown."""
    record_path = target / "prepare_data.json"
    record = {}
    if record_path.exists():
        with contextlib.suppress(InputError):  # a damaged record is rebuilt from this run
            record = read_json(record_path)
    if not isinstance(record, dict) or not isinstance(record.get("splits"), dict):
        record = {"splits": {}}
    for counts in results:
        record["splits"][counts.split] = {**counts.as_dict(), **provenance}
    write_json(record_path, record)
    rows = [SplitCounts(**{key: value for key, value in entry.items() if key in SplitCounts.__dataclass_fields__})
            for entry in record["splits"].values()]
    lines = [f"# {target.name}", "", "Prepared by scripts/prepare_data.py (MTEB reranking format: query, positive, "
             "negative).", "", markdown_table(rows), ""]
    for split, entry in record["splits"].items():
        where = ", ".join(f"{key}={value}" for key, value in entry.items()
                          if key in ("source", "repo", "revision", "folder", "retriever", "candidates_per_query"))
        files = "; ".join(f"{source['file']} (sha256 {source['sha256'][:16]}...)" for source in entry["sources"])
        lines.append(f"- `{split}`: {where}" + (f"; from {files}" if files else ""))
    with atomic_open(target / "prepare_data.md") as handle:
        handle.write("\n".join(lines) + "\n")


_HEADERS = ["dataset", "split", "queries", "avg positives", "avg negatives", "skipped", "file"]
_TEXT_COLUMNS = (0, 1, 6)  # dataset, split, file; the counts are right-aligned


def _cells(counts: SplitCounts) -> list[str]:
    return [counts.dataset, counts.split, f"{counts.queries:,}", f"{counts.avg_positives:.2f}",
            f"{counts.avg_negatives:.2f}", f"{counts.skipped:,}", counts.path]


def text_table(results: Sequence[SplitCounts]) -> str:
    return to_text(_HEADERS, [_cells(counts) for counts in results], text_columns=_TEXT_COLUMNS)


def markdown_table(results: Sequence[SplitCounts]) -> str:
    return to_markdown(_HEADERS, [_cells(counts) for counts in results], text_columns=_TEXT_COLUMNS).rstrip()


# ----------------------------------------------------------------------------------------------------------------
# BEIR folders -> MTEB reranking, with a first-stage retriever
# ----------------------------------------------------------------------------------------------------------------
def _beir_file(beir_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (beir_dir / name).exists():
            return beir_dir / name
    raise InputError(beir_dir / f"{stem}.jsonl", "file does not exist (a BEIR folder holds corpus.jsonl, "
                                                 "queries.jsonl and qrels/<split>.tsv)")


def _text_field(obj, key: str, path: Path, line: int, required: bool = True) -> str:
    value = obj.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str | int):
        raise InputError(path, f"wrong type: '{key}' must be a string, got {type(value).__name__}", line)
    value = str(value)
    if required and not value.strip():
        raise InputError(path, f"missing or empty '{key}'", line)
    return value


def read_beir_corpus(beir_dir: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(document ids, document texts); a text is 'title text' (BEIR's usual way to feed a document to a model)."""
    path = _beir_file(Path(beir_dir), "corpus")
    ids, texts, seen = [], [], set()
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError(path, f"wrong type: expected a JSON object, got {type(obj).__name__}", line)
        doc_id = _text_field(obj, "_id", path, line)
        if doc_id in seen:
            raise InputError(path, f"duplicate _id '{doc_id}'", line)
        title, text = _text_field(obj, "title", path, line, False), _text_field(obj, "text", path, line, False)
        joined = f"{title.strip()} {text.strip()}".strip()
        if not joined:
            raise InputError(path, f"document '{doc_id}' has neither title nor text", line)
        seen.add(doc_id)
        ids.append(doc_id)
        texts.append(joined)
    return ids, texts


def read_beir_queries(beir_dir: str | os.PathLike) -> dict[str, str]:
    path = _beir_file(Path(beir_dir), "queries")
    queries = {}
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError(path, f"wrong type: expected a JSON object, got {type(obj).__name__}", line)
        queries[_text_field(obj, "_id", path, line)] = _text_field(obj, "text", path, line)
    return queries


def beir_splits(beir_dir: str | os.PathLike) -> list[str]:
    return sorted(path.stem for path in (Path(beir_dir) / "qrels").glob("*.tsv"))


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, tuple[int, int]]]:
    """query id -> {corpus id: (score, line)}; the header line (query-id, corpus-id, score) is skipped."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    qrels: dict[str, dict[str, tuple[int, int]]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for line, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not fields or not "".join(fields).strip():
                continue
            if len(fields) < 3:
                raise InputError(path, f"expected 3 tab-separated fields (query-id, corpus-id, score), got "
                                       f"{len(fields)}", line)
            query_id, doc_id, score = fields[0].strip(), fields[1].strip(), fields[2].strip()
            try:
                value = int(float(score))
            except ValueError:
                if line == 1:
                    continue  # the header
                raise InputError(path, f"score '{score}' is not a number", line) from None
            qrels.setdefault(query_id, {})[doc_id] = (value, line)
    if not qrels:
        raise InputError(path, "no judgements (expected lines: query-id<TAB>corpus-id<TAB>score)")
    return qrels


class BM25Retriever:
    """First stage by Okapi BM25 over the documents' words (ragdistill.data.bm25)."""

    name = "bm25"

    def __init__(self, documents: Sequence[str]):
        from ragdistill.data.bm25 import BM25

        self.index = BM25(documents)

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        hits = []
        for start in tqdm(range(0, len(queries), 256), desc="bm25 search", unit=" batches", leave=False):
            hits += [[doc for doc, _ in row] for row in self.index.search(queries[start:start + 256], k)]
        return hits


class DenseRetriever:
    """First stage by cosine similarity of SentenceTransformer embeddings (the model's query / document prompts
    apply when it defines them, as for Qwen3-Embedding)."""

    def __init__(self, model_path: str, documents: Sequence[str], batch_size: int = 64, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        if model_path.startswith((".", "/", "~")) and not Path(model_path).expanduser().is_dir():
            raise InputError(model_path, "no such model folder (--retriever takes 'bm25' or a SentenceTransformer)")
        self.name = model_path
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(Path(model_path).expanduser()) if Path(model_path).expanduser().is_dir()
                                         else model_path, device=device)
        encode = getattr(self.model, "encode_document", self.model.encode)
        self.documents = encode(list(documents), batch_size=batch_size, convert_to_tensor=True,
                                normalize_embeddings=True, show_progress_bar=True)

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        from sentence_transformers.util import dot_score, semantic_search

        encode = getattr(self.model, "encode_query", self.model.encode)
        embedded = encode(list(queries), batch_size=self.batch_size, convert_to_tensor=True,
                          normalize_embeddings=True, show_progress_bar=True)
        hits = semantic_search(embedded, self.documents, top_k=k, score_function=dot_score)
        return [[hit["corpus_id"] for hit in row] for row in hits]


def make_retriever(spec: str, documents: Sequence[str], batch_size: int = 64):
    """'bm25', or a SentenceTransformer (local folder or model name)."""
    if spec.strip().lower() == "bm25":
        return BM25Retriever(documents)
    return DenseRetriever(spec, documents, batch_size=batch_size)


def beir_split_samples(corpus_ids: Sequence[str], corpus_texts: Sequence[str], queries: dict[str, str],
                       qrels_path: Path, retriever, candidates_per_query: int, counts: SplitCounts,
                       skip_invalid: bool = False) -> list[RerankingSample]:
    """MTEB rows for one qrels split: positives from the qrels (score > 0), negatives = the retriever's top
    `candidates_per_query` that are not positives.

    Skipped and counted: queries without a positive judgement, and queries whose candidates are all positives.
    A document with the query's own id is never a candidate (BEIR's rule for duplicate-question sets); a candidate
    whose text equals a positive's (duplicate documents) is dropped rather than labelled both ways.
    """
    skips = SkipCounter(skip_invalid)
    index_of = {doc_id: i for i, doc_id in enumerate(corpus_ids)}
    judged = read_qrels(qrels_path)
    wanted = []  # (query id, query text, positive document indices)
    no_positive = 0
    for query_id, docs in judged.items():
        first_line = min(line for _, line in docs.values())
        if query_id not in queries:
            skips.handle(InputError(qrels_path, f"query-id '{query_id}' is not in queries.jsonl", first_line))
            continue
        positives = []
        for doc_id, (score, line) in docs.items():
            if doc_id not in index_of:
                skips.handle(InputError(qrels_path, f"corpus-id '{doc_id}' is not in corpus.jsonl", line))
                continue
            if score > 0:
                positives.append(index_of[doc_id])
        if positives:
            wanted.append((query_id, queries[query_id], positives))
        else:
            no_positive += 1
    if not wanted:
        raise InputError(qrels_path, "no query has a positive judgement (score > 0) on a document of the corpus")

    # Ask for one more candidate than needed in case the query's own document is among them.
    hits = retriever.search([text for _, text, _ in wanted], candidates_per_query + 1)
    samples, no_negative, recall = [], 0, 0.0
    for (query_id, text, positives), found in zip(wanted, hits):
        candidates = [doc for doc in found if corpus_ids[doc] != query_id][:candidates_per_query]
        positive_set = set(positives)
        recall += len(positive_set.intersection(candidates)) / len(positive_set)
        positive_texts = [corpus_texts[doc] for doc in positives]
        seen = set(positive_texts)
        negatives = []
        for doc in candidates:
            if doc not in positive_set and corpus_texts[doc] not in seen:
                seen.add(corpus_texts[doc])
                negatives.append(corpus_texts[doc])
        if not negatives:
            no_negative += 1
            continue
        samples.append(RerankingSample(query=text, positive=positive_texts, negative=negatives))
    counts.skipped = no_positive + no_negative + skips.total
    counts.details.update({
        "queries_judged": len(judged), "skipped_no_positive": no_positive, "skipped_no_negative": no_negative,
        "skipped_invalid": skips.total, f"retriever_recall@{candidates_per_query}": recall / len(wanted),
    })
    if skips.total:
        logger.warning(skips.summary())
    return samples


def prepare_beir(beir_dir: str | os.PathLike, output_dir: str | os.PathLike, retriever: str = "bm25",
                 candidates_per_query: int = 30, splits: Sequence[str] | None = None, name: str | None = None,
                 batch_size: int = 64, skip_invalid: bool = False) -> list[SplitCounts]:
    """Convert a BEIR folder into `<output_dir>/<name>/<split>.jsonl` (one file per qrels split)."""
    beir_dir = Path(beir_dir)
    if not beir_dir.is_dir():
        raise InputError(beir_dir, "--beir_dir is not a folder")
    if candidates_per_query < 1:
        raise InputError(None, f"--candidates_per_query must be at least 1, got {candidates_per_query}")
    available = beir_splits(beir_dir)
    wanted = list(splits) if splits else available
    missing = [split for split in wanted if split not in available]
    if missing or not wanted:
        raise InputError(beir_dir / "qrels", f"no qrels file for split(s) {', '.join(missing) or '(any)'} "
                                             f"(found: {', '.join(available) or 'none'})")
    name = name or beir_dir.resolve().name
    corpus_ids, corpus_texts = read_beir_corpus(beir_dir)
    queries = read_beir_queries(beir_dir)
    logger.info(f"{name}: {len(corpus_ids):,} documents, {len(queries):,} queries; indexing with {retriever}")
    first_stage = make_retriever(retriever, corpus_texts, batch_size=batch_size)
    target = Path(output_dir) / short_name(name)
    results = []
    for split in wanted:
        qrels_path = beir_dir / "qrels" / f"{split}.tsv"
        counts = SplitCounts(dataset=short_name(name), split=split, path=str(target / f"{split}.jsonl"),
                             sources=[{"file": str(p), "sha256": file_sha256(p)}
                                      for p in (qrels_path, _beir_file(beir_dir, "corpus"),
                                                _beir_file(beir_dir, "queries"))])
        samples = beir_split_samples(corpus_ids, corpus_texts, queries, qrels_path, first_stage,
                                     candidates_per_query, counts, skip_invalid)
        write_samples(samples, target / f"{split}.jsonl", counts, qrels_path)
        results.append(counts)
    record_provenance(target, results, {"source": "BEIR folder", "folder": str(beir_dir), "retriever": retriever,
                                        "candidates_per_query": candidates_per_query})
    return results
