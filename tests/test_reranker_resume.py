"""Stage 1 survives kill -9: a real score.py process killed after k chunks reached the disk, re-run
with the same command, ends with the same bytes as an uninterrupted run. Crashes in the final join are covered by
stopping the join at each of its steps."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ragdistill.core import resumable
from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json
from ragdistill.core.resumable import is_complete, meta_path, parts_dir
from ragdistill.reranker.scoring import score_file
from ragdistill.reranker.teachers import TeacherArguments, describe_teacher, load_teacher
from tests.builders import repo_env

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "data/wikiqa/dev.jsonl.gz"
MAX_QUERIES, CHUNK_SIZE, BATCH_SIZE = 5, 2, 8
SMALL = 3  # queries for the in-process crash tests


def _command(tiny_models, output_dir: Path) -> list[str]:
    return [sys.executable, str(REPO / "Reranker-Distillation/score.py"),
            "--teacher_model", str(tiny_models["qwen3_reranker"]), "--backend", "torch", "--teacher_dtype", "float32",
            "--teacher_max_length", "512", "--batch_size", str(BATCH_SIZE), "--train_files", str(DEV),
            "--output_dir", str(output_dir), "--max_queries", str(MAX_QUERIES), "--chunk_size", str(CHUNK_SIZE)]


def _env() -> dict:
    return repo_env(TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def _run_and_kill(command: list[str], parts: Path, chunks_on_disk: int, timeout: float = 180) -> int:
    """Start stage 1, SIGKILL it as soon as `chunks_on_disk` finished chunks exist; return how many there were."""
    process = subprocess.Popen(command, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done = len(list(parts.glob("chunk-*.jsonl"))) if parts.exists() else 0
            if done >= chunks_on_disk:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return done
            if process.poll() is not None:
                pytest.fail(f"stage 1 ended (status {process.returncode}) before {chunks_on_disk} chunks were on disk")
            time.sleep(0.01)
        pytest.fail("timed out waiting for chunks")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def options(tiny_models) -> TeacherArguments:
    return TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="torch", teacher_dtype="float32",
                          teacher_max_length=512, batch_size=BATCH_SIZE)


@pytest.fixture(scope="module")
def teacher(options):
    return load_teacher(options)


def _uninterrupted(options, teacher, output: Path, max_queries: int) -> Path:
    score_file(DEV, output, describe_teacher(options), lambda: teacher, chunk_size=CHUNK_SIZE, max_queries=max_queries)
    return output


@pytest.fixture(scope="module")
def reference(options, teacher, tmp_path_factory) -> Path:
    """An uninterrupted run with the same settings as the killed one."""
    return _uninterrupted(options, teacher, tmp_path_factory.mktemp("reference") / "dev.scores.jsonl", MAX_QUERIES)


@pytest.fixture(scope="module")
def small_reference(options, teacher, tmp_path_factory) -> Path:
    return _uninterrupted(options, teacher, tmp_path_factory.mktemp("small") / "dev.scores.jsonl", SMALL)


@pytest.mark.slow
def test_kill_9_twice_then_resume_gives_the_same_bytes(tiny_models, tmp_path, reference):
    command = _command(tiny_models, tmp_path)
    output = tmp_path / "dev.scores.jsonl"
    num_chunks = read_json(meta_path(reference))["num_chunks"]
    assert num_chunks >= 20
    first = _run_and_kill(command, parts_dir(output), 2)
    assert not is_complete(output) and not output.exists()
    second = _run_and_kill(command, parts_dir(output), first + 4)
    assert first < second < num_chunks and not is_complete(output)
    finished = subprocess.run(command, env=_env(), cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert f"resuming, {second} of {num_chunks} chunks already done" in finished.stdout
    assert output.read_bytes() == reference.read_bytes()
    meta = read_json(meta_path(output))
    assert meta["complete"] is True and meta["num_pairs"] == read_json(meta_path(reference))["num_pairs"]
    assert not parts_dir(output).exists()


class _Crash(Exception):
    pass


@contextlib.contextmanager
def monkeypatch_finish_crash():
    with pytest.MonkeyPatch.context() as patch:
        _crash_in_join(patch, "before join")
        yield


def _crash(*args, **kwargs):
    raise _Crash()


def _crash_in_join(patch, step: str) -> None:
    """Make ChunkedJob.finish stop at `step`, as a kill there would."""
    if step == "before join":  # every chunk on disk, nothing joined yet
        patch.setattr(resumable.ChunkedJob, "finish", _crash)
    elif step == "before metadata":  # the joined output is in place, its metadata not yet
        write_json = resumable.write_json
        patch.setattr(resumable, "write_json",
                      lambda path, obj: _crash() if str(path).endswith(".meta.json") else write_json(path, obj))
    else:  # metadata written, the chunk folder not yet removed
        patch.setattr(resumable.shutil, "rmtree", _crash)


@pytest.mark.parametrize("step", ["before join", "before metadata", "during clean-up"])
def test_crash_while_joining_then_resume(options, teacher, tmp_path, small_reference, monkeypatch, step):
    output = tmp_path / "dev.scores.jsonl"
    with monkeypatch.context() as patch:
        _crash_in_join(patch, step)
        with pytest.raises(_Crash):
            _uninterrupted(options, teacher, output, SMALL)
    assert parts_dir(output).exists()
    assert is_complete(output) == (step == "during clean-up")

    def must_not_load():
        pytest.fail("every chunk was finished; nothing should be scored again")

    score_file(DEV, output, describe_teacher(options), must_not_load, chunk_size=CHUNK_SIZE, max_queries=SMALL)
    assert output.read_bytes() == small_reference.read_bytes() and is_complete(output)
    assert not parts_dir(output).exists()


def test_other_settings_do_not_mix_with_a_partial_run(options, teacher, tmp_path):
    output = tmp_path / "dev.scores.jsonl"
    with monkeypatch_finish_crash(), pytest.raises(_Crash):
        _uninterrupted(options, teacher, output, SMALL)
    changed = replace(options, teacher_max_length=256)
    with pytest.raises(InputError, match="a partial output from a different run is here"):
        score_file(DEV, output, describe_teacher(changed), lambda: teacher, chunk_size=CHUNK_SIZE, max_queries=SMALL)
    with pytest.raises(InputError, match="a partial output from a different run is here"):
        score_file(DEV, output, describe_teacher(options), lambda: teacher, chunk_size=CHUNK_SIZE + 1,
                   max_queries=SMALL)
