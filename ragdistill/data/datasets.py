"""Getting reranking data into the MTEB reranking format the stage scripts read.

Two ways in:
- MTEB reranking sets by name (e.g. stackoverflowdupquestions-reranking), from ModelScope (`MTEB/<name>`) or the
  Hugging Face hub (`mteb/<name>`), fetched by `ragdistill.data.hub`. A dataset repo holds one `<split>.jsonl.gz`
  per split, or, in converted revisions, parquet files with the columns query / positive / negative; both are read
  here. Every row is validated and written, decompressed, to `<output_dir>/<name>/<split>.jsonl`.
- A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): `ragdistill.data.beir`, with a first-stage
  retriever, written through the same counting and provenance as here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.hashing import file_sha256
from ragdistill.core.jsonl import atomic_open, iter_jsonl, read_json, write_json, write_jsonl
from ragdistill.core.mteb import validate_sample
from ragdistill.core.report import to_markdown, to_text
from ragdistill.data.hub import short_name

logger = logging.getLogger(__name__)

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
            if sample.has_labels:
                counts.positives += len(sample.positive)
                counts.negatives += len(sample.negative)
            else:
                counts.details["candidates"] = counts.details.get("candidates", 0) + len(sample.candidates)
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
