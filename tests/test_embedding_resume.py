"""Stage 1 of Embedding-Distillation survives kill -9 anywhere: a real subprocess is killed (SIGKILL) after k
chunks, in the middle of writing a chunk, in the middle of writing the rows, and between renaming the rows into
place and writing the metadata; re-running the same command each time continues, and the finished output equals an
uninterrupted run's byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.resumable import meta_path, parts_dir, require_complete
from tests.builders import repo_env, stage_main
from tests.conftest import REPO

SCRIPT = REPO / "Embedding-Distillation" / "score.py"

# Runs the stage-1 script with a hook that SIGKILLs its own process at one point of the work.
KILL_DRIVER = r'''
import os, runpy, signal, sys
import ragdistill.core.resumable as resumable
import ragdistill.embedding.scoring as soft_labels
from ragdistill.core.jsonl import dumps

mode, k, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.argv = [script, *sys.argv[4:]]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
saved = 0
save_chunk = resumable.ChunkedJob.save_chunk

def killing_save_chunk(self, index, write, binary=False):
    global saved
    if mode == "mid-chunk" and saved == k:
        def half_written(handle):
            handle.write(b"\x93NUMPY half a chunk")
            handle.flush()
            die()
        return save_chunk(self, index, half_written, binary)
    save_chunk(self, index, write, binary)
    saved += 1
    if mode == "after-chunks" and saved == k:
        die()

resumable.ChunkedJob.save_chunk = killing_save_chunk
if mode == "mid-rows":
    def half_the_rows(handle, rows):
        for row in rows[: len(rows) // 2]:
            handle.write(dumps(row) + "\n")
        handle.flush()
        die()
    soft_labels.write_rows = half_the_rows
if mode == "before-meta":
    write_json = resumable.write_json
    def killing_write_json(path, obj):
        if str(path).endswith(".meta.json"):
            die()
        write_json(path, obj)
    resumable.write_json = killing_write_json
runpy.run_path(script, run_name="__main__")
'''


def _command(tiny_models, train_file, output):
    return ["--teacher_model", str(tiny_models["qwen3_embedder"]), "--backend", "torch",
            "--teacher_dtype", "float32", "--teacher_max_length", "96", "--chunk_size", "20", "--batch_size", "8",
            "--train_files", str(train_file), "--output_file", str(output), "--num_negatives", "3"]


def _run(args, driver=None, mode=None, k=0):
    env = repo_env(TRANSFORMERS_OFFLINE="1")
    prefix = [sys.executable, str(driver), mode, str(k), str(SCRIPT)] if driver else [sys.executable, str(SCRIPT)]
    return subprocess.run(prefix + args, env=env, capture_output=True, text=True, timeout=300)


def _chunks(output):
    return sorted(p.name for p in parts_dir(output).glob("chunk-*"))


@pytest.mark.slow
def test_kill_minus_nine_anywhere_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_models):
    import gzip

    rows = [json.loads(line) for line in gzip.open(REPO / "data/wikiqa/dev.jsonl.gz", "rt")][:8]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    num_texts = len({r["query"] for r in rows}) + len({p for r in rows for p in r["positive"] + r["negative"]})
    num_chunks = -(-num_texts // 20)
    assert num_chunks >= 6
    driver = tmp_path / "kill_driver.py"
    driver.write_text(KILL_DRIVER)
    output = tmp_path / "resumed" / "rows.jsonl"
    args = _command(tiny_models, train_file, output)

    # killed right after 2 chunks are on disk: nothing looks finished, stage 2 refuses it
    run = _run(args, driver, "after-chunks", 2)
    assert run.returncode == -9, run.stderr[-2000:]
    assert _chunks(output) == ["chunk-00000.npy", "chunk-00001.npy"] and not output.exists()
    with pytest.raises(InputError, match=f"stopped after 2 of {num_chunks} chunks. Re-run"):
        require_complete(output)

    # resumed, then killed while writing its 4th chunk: the half-written chunk never shows under its name
    run = _run(args, driver, "mid-chunk", 3)
    assert run.returncode == -9 and "resuming: 2 of" in run.stdout
    assert len(_chunks(output)) == 5

    # resumed, all chunks done, killed half way through writing the rows
    run = _run(args, driver, "mid-rows")
    assert run.returncode == -9 and not output.exists() and len(_chunks(output)) == num_chunks

    # killed after the rows are renamed into place, before the metadata says complete
    run = _run(args, driver, "before-meta")
    assert run.returncode == -9 and output.exists() and not meta_path(output).exists()
    with pytest.raises(InputError, match="incomplete"):
        require_complete(output)

    # the last re-run has nothing left to embed: it only rebuilds the rows
    run = _run(args)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = require_complete(output)
    assert meta["embedding"]["texts_embedded_this_run"] == 0 and "loading teacher" not in run.stdout
    assert not parts_dir(output).exists() and not list(output.parent.glob(".*tmp-*"))

    clean = tmp_path / "clean" / "rows.jsonl"
    stage_main("Embedding-Distillation", "score")(_command(tiny_models, train_file, clean))  # uninterrupted
    assert output.read_bytes() == clean.read_bytes()
    assert require_complete(clean)["counts"] == meta["counts"]
