"""JSON lines I/O and MTEB validation: every bad-input case names the file and the line."""

from __future__ import annotations

import gzip
import json

import pytest

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.jsonl import atomic_open, iter_jsonl, read_jsonl, write_jsonl
from ragdistill.core.mteb import read_samples

GOOD = json.dumps({"query": "q", "positive": ["p"], "negative": ["n1", "n2"]})


@pytest.mark.parametrize("gz", [False, True])
def test_roundtrip_plain_and_gzip(tmp_path, gz):
    path = tmp_path / ("rows.jsonl.gz" if gz else "rows.jsonl")
    rows = [{"a": i, "text": "é ü 中文"} for i in range(5)]
    assert write_jsonl(path, rows) == 5
    assert read_jsonl(path) == rows
    if gz:
        assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_gzip_output_is_byte_identical_across_runs(tmp_path):
    rows = [{"i": i} for i in range(100)]
    write_jsonl(tmp_path / "a.jsonl.gz", rows)
    write_jsonl(tmp_path / "b.jsonl.gz", rows)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("partial\n")
        raise RuntimeError("crash mid-write")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_previous_file_until_done(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"v": 1}])
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write('{"v": 2}\n')
        raise RuntimeError
    assert read_jsonl(path) == [{"v": 1}]


def _error(path, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        read_samples(path, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("lines", "line", "words"),
    [
        ([GOOD, '{"query": "q", "positive": ["p"]'], 2, "malformed JSON"),
        ([GOOD, GOOD, '{"query": "q", "positives": ["p"], "negative": ["n"]}'], 3, "misspelled"),
        (['{"query": "q", "negative": ["n"]}'], 1, "missing key: 'positive'"),
        (['{"query": "q", "positive": "p", "negative": ["n"]}'], 1, "'positive' must be a list"),
        (['{"query": 3, "positive": ["p"], "negative": ["n"]}'], 1, "'query' must be a string"),
        (['{"query": "q", "positive": [1], "negative": ["n"]}'], 1, "'positive'[0] must be a string"),
        (['{"query": "q", "positive": [], "negative": ["n"]}'], 1, "empty list: 'positive'"),
        (['{"query": "q", "positive": ["p"], "negative": []}'], 1, "empty list: 'negative'"),
        (['{"query": " ", "positive": ["p"], "negative": ["n"]}'], 1, "empty string"),
        (['{"query": "q", "positive": ["p"], "negative": [""]}'], 1, "empty string"),
        (['["q", ["p"], ["n"]]'], 1, "expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_problem(write_lines, lines, line, words):
    path = write_lines("bad.jsonl", lines)
    error = _error(path)
    assert error.line == line
    assert words in str(error)
    assert str(error).startswith(f"{path}:{line}: ")


def test_non_utf8_bytes(write_lines):
    path = write_lines("latin1.jsonl", GOOD.encode() + b"\n" + '{"query": "caf\xe9"}'.encode("latin-1") + b"\n")
    error = _error(path)
    assert error.line == 2 and "UTF-8" in str(error)


def test_empty_file(write_lines):
    error = _error(write_lines("empty.jsonl", b""))
    assert "empty" in str(error)


def test_missing_path(tmp_path):
    error = _error(tmp_path / "nope.jsonl")
    assert "does not exist" in str(error)


def test_gzip_cut_short(tmp_path):
    data = gzip.compress(("\n".join([GOOD] * 2000) + "\n").encode(), mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    error = _error(path)
    assert "cut short" in str(error)


def test_skip_invalid_counts_and_keeps_good_rows(write_lines):
    lines = [GOOD, '{"query": "q"}', "not json at all", '{"query": "q", "positive": [], "negative": ["n"]}']
    raw = ("\n".join(lines) + "\n").encode() + b'{"query": "caf\xe9"}\n' + GOOD.replace('"q"', '"q2"').encode()
    path = write_lines("mixed.jsonl", raw)
    skips = SkipCounter(skip_invalid=True)
    samples = read_samples(path, skips)
    assert [s.query for s in samples] == ["q", "q2"]
    assert skips.total == 4
    assert skips.by_reason == {"missing key": 1, "malformed JSON": 1, "empty list": 1, "not valid UTF-8": 1}
    assert "skipped 4 invalid row(s)" in skips.summary()


def test_all_rows_invalid_is_an_error_even_when_skipping(write_lines):
    path = write_lines("allbad.jsonl", ['{"query": "q"}'])
    error = _error(path, skips=SkipCounter(skip_invalid=True))
    assert "no valid rows" in str(error)


def test_bundled_data_validates():
    from tests.conftest import REPO

    for path in sorted((REPO / "data").glob("*/*.jsonl.gz")):
        samples = read_samples(path)
        assert samples and all(s.positive and s.negative for s in samples)


def test_iter_jsonl_skips_blank_lines_but_counts_them(write_lines):
    path = write_lines("blank.jsonl", [GOOD, "", "{bad"])
    with pytest.raises(InputError) as info:
        list(iter_jsonl(path))
    assert info.value.line == 3


def test_first_queries_keeps_the_first_n_in_order_and_reads_no_further(write_lines):
    from ragdistill.core.mteb import first_queries, iter_samples

    good = json.dumps({"query": "q", "positive": ["p"], "negative": ["n"]})
    path = write_lines("some.jsonl", [good.replace('"q"', f'"q{i}"') for i in range(3)] + ["not json"])
    assert [s.query for s in first_queries(iter_samples(path), 2)] == ["q0", "q1"]  # the bad line is never read
    assert first_queries({"a": 1, "b": 2}.items(), 0) == [("a", 1), ("b", 2)]  # 0 = all
    with pytest.raises(InputError, match="max_queries"):
        first_queries([], -1)


def test_hashing_and_model_config(tmp_path):
    import hashlib

    from ragdistill.core.hashing import file_digest, file_sha256, text_key, texts_digest
    from ragdistill.core.models import architecture, read_model_config

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (3 << 20))
    assert file_sha256(path) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()
    assert file_digest(path) == file_sha256(path)[:16]
    assert texts_digest(["ab"]) != texts_digest(["a", "b"])
    assert text_key("q") == hashlib.blake2b(b"q", digest_size=16).digest() != text_key("q ")
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(InputError, match="no config.json"):
        read_model_config(str(model), "reranker")
    (model / "config.json").write_text("{broken")
    with pytest.raises(InputError, match="not a reranker: unreadable config"):
        read_model_config(str(model), "reranker")
    (model / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    assert architecture(read_model_config(str(model))) == "BertModel"
    assert architecture({}) == "<none>"
    with pytest.raises(InputError, match="does not exist"):
        read_model_config(str(tmp_path / "missing"))
