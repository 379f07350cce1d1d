"""Streaming JSON lines, plain or gzipped, chosen by the file name; writes are atomic (temporary name, then rename)."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragdistill.core.errors import InputError, SkipCounter

# gzip level 6 with mtime 0: same bytes for the same rows (determinism), and fast enough to stream.
_GZIP_LEVEL = 6


def is_gzip(path: str | os.PathLike) -> bool:
    return os.fspath(path).endswith(".gz")


def iter_jsonl(path: str | os.PathLike, skips: SkipCounter | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line_number, parsed_object) for each non-blank line; bad input raises InputError naming file and line.

    With a SkipCounter that skips, lines that are not UTF-8 or not JSON are counted and skipped; problems of the
    whole file (missing, empty, gzip cut short) always raise.
    """
    skips = skips or SkipCounter(skip_invalid=False)
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a .jsonl or .jsonl.gz file")
    seen_any = False
    line_number = 0
    raw = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")
    try:
        with raw:
            while True:
                try:
                    line = raw.readline()
                except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                    raise InputError(path, f"gzip stream is damaged or cut short ({exc})", line_number + 1) from None
                if not line:
                    break
                line_number += 1
                if not line.strip():
                    continue
                seen_any = True
                try:
                    obj = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    skips.handle(InputError(path, f"not valid UTF-8 (byte {exc.start})", line_number))
                    continue
                except json.JSONDecodeError as exc:
                    skips.handle(InputError(path, f"malformed JSON ({exc.msg} at column {exc.colno})", line_number))
                    continue
                yield line_number, obj
    finally:
        raw.close()
    if not seen_any:
        raise InputError(path, "file is empty (no JSON lines)")


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    return [obj for _, obj in iter_jsonl(path)]


def dumps(obj: Any) -> str:
    """One canonical JSON line: same object, same bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[io.TextIOBase]:
    """Open `path` for writing under a temporary name; rename into place only if the block finishes.

    A crash or an exception leaves no file at `path` that could be mistaken for a finished one.
    Gzip is chosen by the `.gz` suffix. `mode` is "w" (text) or "wb" (bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    binary = "b" in mode
    try:
        if is_gzip(path):
            raw = open(tmp, "wb")
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0)
            handle = gz if binary else io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
            try:
                yield handle
            finally:
                handle.close()
                raw.close()
        else:
            with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": "\n"})) as handle:
                yield handle
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Write rows atomically; return how many."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
            count += 1
    return count


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"malformed JSON ({exc})") from None
