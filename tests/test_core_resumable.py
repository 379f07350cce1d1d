"""Chunked stage-1 outputs: resume skips finished chunks, partial outputs are refused with how to resume."""

from __future__ import annotations

import json

import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_jsonl
from ragdistill.core.resumable import ChunkedJob, concatenate_text_chunks, fingerprint, is_complete, require_complete


def _run(output, items, chunk_size, fail_at=None, job_fp="fp", num_shards=1, shard_id=0):
    job = ChunkedJob(output, job_fp, len(items), chunk_size, num_shards=num_shards, shard_id=shard_id)
    computed = []
    for index in job.pending():
        if index == fail_at:
            raise RuntimeError("simulated crash")
        rows = [items[i] for i in job.chunk_range(index)]
        computed.append(index)
        job.save_chunk(index, lambda h, rows=rows: h.writelines(json.dumps(r) + "\n" for r in rows))
    if num_shards > 1:
        return computed
    job.finish(concatenate_text_chunks(job.chunk_paths()), {"rows": len(items)})
    return computed


def test_resume_after_crash_computes_only_missing_chunks_and_matches_clean_run(tmp_path):
    items = [{"i": i} for i in range(23)]
    with pytest.raises(RuntimeError):
        _run(tmp_path / "out.jsonl", items, 5, fail_at=3)
    with pytest.raises(InputError, match="stopped after 3 of 5 chunks. Re-run"):
        require_complete(tmp_path / "out.jsonl", "score.py")
    assert _run(tmp_path / "out.jsonl", items, 5) == [3, 4]
    _run(tmp_path / "clean.jsonl", items, 5)
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
    assert read_jsonl(tmp_path / "out.jsonl") == items
    assert require_complete(tmp_path / "out.jsonl")["complete"] is True
    assert not (tmp_path / "out.jsonl.parts").exists()


def test_changed_settings_refuse_to_mix_with_old_chunks(tmp_path):
    items = [{"i": i} for i in range(10)]
    with pytest.raises(RuntimeError):
        _run(tmp_path / "out.jsonl", items, 4, fail_at=1)
    with pytest.raises(InputError, match="different run"):
        _run(tmp_path / "out.jsonl", items, 3)
    with pytest.raises(InputError, match="different run"):
        _run(tmp_path / "out.jsonl", items, 4, job_fp="other-model")


def test_shards_compute_their_chunks_and_the_plain_run_joins(tmp_path):
    items = [{"i": i} for i in range(23)]
    output = tmp_path / "out.jsonl"
    assert _run(output, items, 3, num_shards=3, shard_id=2) == [2, 5]
    assert _run(output, items, 3, num_shards=3, shard_id=0) == [0, 3, 6]
    with pytest.raises(InputError, match="stopped after 5 of 8 chunks"):
        require_complete(output)
    assert _run(output, items, 3, num_shards=3, shard_id=0) == []  # resumed shard: nothing left of its own
    with pytest.raises(InputError, match="different run"):
        _run(output, items, 3, job_fp="other-model", num_shards=3, shard_id=1)
    assert _run(output, items, 3) == [1, 4, 7]  # the join computes only what no shard did
    assert read_jsonl(output) == items and is_complete(output)
    with pytest.raises(InputError, match="--shard_id must be in 0..2"):
        ChunkedJob(tmp_path / "x.jsonl", "fp", 5, 2, num_shards=3, shard_id=3)


def test_output_without_metadata_is_incomplete(tmp_path):
    out = tmp_path / "scores.jsonl"
    out.write_text('{"a": 1}\n')
    assert not is_complete(out)
    with pytest.raises(InputError, match="incomplete"):
        require_complete(out)
    with pytest.raises(InputError, match="does not exist"):
        require_complete(tmp_path / "missing.jsonl")


def test_fingerprint_is_stable_and_sensitive():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
