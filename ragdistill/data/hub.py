"""MTEB reranking sets by name (e.g. stackoverflowdupquestions-reranking), from ModelScope (`MTEB/<name>`) or the
Hugging Face hub (`mteb/<name>`): the dataset repo's snapshot, or a local copy of it, for `datasets.prepare_dataset`.
A source that cannot be reached fails fast with a message saying what to do instead."""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

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
        from huggingface_hub import is_offline_mode, snapshot_download

        offline = "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
        reason = offline if is_offline_mode() else unreachable_reason(endpoint, connect_timeout)
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
