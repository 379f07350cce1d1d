"""Digests that name inputs: of a file's bytes, and of a sequence of texts."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

DIGEST_LENGTH = 16  # hex digits kept for names and fingerprints


def file_sha256(path: str | os.PathLike) -> str:
    """The full sha256 of a file's bytes, read in blocks (files may be larger than memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """A file's sha256, shortened: enough to tell two inputs apart in a fingerprint."""
    return file_sha256(path)[:DIGEST_LENGTH]


def texts_digest(texts: Iterable[str]) -> str:
    """A digest of texts in order (each ends with a separator, so ["ab"] and ["a", "b"] differ)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:DIGEST_LENGTH]


def text_key(text: str) -> bytes:
    """A 16-byte key standing for a text (e.g. a query) in a large set or index, instead of the text itself."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
