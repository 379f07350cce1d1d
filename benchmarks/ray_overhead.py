"""Benchmark: Reranker stage 1 on Ray Data (`--engine ray`) against the direct path, on the same pairs, in one run.

Each configuration (direct; ray with each --num_replicas given, the machine's CPUs split between the replicas, so
every configuration computes with the same threads) scores the WikiQA dev pairs of the first N queries
at two sizes, with Reranker-Distillation/score.py end to end in a fresh process: the wall time is what a user waits
for (Python start, model load, Ray's start and stop included). From the two sizes, per configuration:
- fixed cost: wall time at zero pairs (the intercept of wall time against pairs);
- steady throughput: pairs per second once running (the slope: extra pairs / extra seconds).
All outputs must be byte-identical to the direct path's; a Ray run must leave no /dev/shm file behind.

The teacher is a random Qwen3 of the benchmark's "small" shape (25M non-embedding parameters), built offline.

    python benchmarks/ray_overhead.py --output_dir docs/benchmarks/ray-overhead
    python benchmarks/ray_overhead.py --queries 5,20 --replicas 1,2 --backend vllm
"""

from __future__ import annotations

import filecmp
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmark import TEACHER_SHAPES

from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json, write_json
from ragdistill.core.resumable import meta_path
from tests.builders import build_qwen3, repo_env

REPO = Path(__file__).resolve().parents[1]
DEV_FILE = REPO / "data/wikiqa/dev.jsonl.gz"
logger = logging.getLogger(__name__)


@dataclass
class RayBenchmarkArguments:
    output_dir: str = field(default="results/ray-overhead", metadata={"help": "Where ray_overhead.{md,json} go."})
    queries: str = field(default="5,40", metadata={"help": "The two sizes: WikiQA dev queries scored (first N)."})
    replicas: str = field(default="1,2", metadata={"help": "Ray configurations: --num_replicas values."})
    backend: str = field(default="torch", metadata={"help": "Teacher backend: torch or vllm."})
    teacher_dtype: str = field(default="float32", metadata={"help": "float32 or bfloat16."})
    chunk_size: int = field(default=16, metadata={"help": "Pairs per chunk (one Ray task each)."})

    def __post_init__(self):
        self.sizes = [int(n) for n in split_paths(self.queries)]
        self.replica_counts = [int(n) for n in split_paths(self.replicas)]
        if len(self.sizes) != 2 or self.sizes[0] >= self.sizes[1]:
            raise InputError(None, f"--queries needs two sizes, small then large, got '{self.queries}'")


def run_score(args: RayBenchmarkArguments, model: Path, queries: int, engine: str, replicas: int,
              output_dir: Path) -> dict:
    """One score.py run in a fresh process: wall time, pairs, and what it left in /dev/shm."""
    command = [sys.executable, str(REPO / "Reranker-Distillation/score.py"), "--teacher_model", str(model),
               "--backend", args.backend, "--teacher_dtype", args.teacher_dtype, "--train_files", str(DEV_FILE),
               "--output_dir", str(output_dir), "--max_queries", str(queries), "--chunk_size", str(args.chunk_size),
               "--engine", engine, "--num_replicas", str(replicas), "--enforce_eager", "true",
               "--cpus_per_replica", str(max(1, (os.cpu_count() or 1) // replicas))]
    shm_before = set(os.listdir("/dev/shm"))
    start = time.perf_counter()
    finished = subprocess.run(command, env=repo_env(TOKENIZERS_PARALLELISM="false"), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if finished.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-3000:]}")
    output = output_dir / "dev.scores.jsonl"
    meta = read_json(meta_path(output))
    return {"engine": engine, "replicas": replicas, "queries": queries, "pairs": meta["num_pairs"],
            "wall_seconds": round(wall, 2), "scoring_seconds": meta["seconds"], "output": str(output),
            "shm_left": sorted(set(os.listdir("/dev/shm")) - shm_before)}


def summarise(runs: list[dict]) -> list[dict]:
    """Per configuration: fixed cost (intercept) and steady pairs/s (slope) from its two sizes."""
    rows = []
    for key in dict.fromkeys((run["engine"], run["replicas"]) for run in runs):
        small, large = [run for run in runs if (run["engine"], run["replicas"]) == key]
        rate = (large["pairs"] - small["pairs"]) / (large["wall_seconds"] - small["wall_seconds"])
        cpus = max(1, (os.cpu_count() or 1) // key[1])
        rows.append({"configuration": key[0] if key[0] == "direct" else f"ray, {key[1]} replica(s) x {cpus} CPU",
                     "fixed_seconds": round(small["wall_seconds"] - small["pairs"] / rate, 1),
                     "steady_pairs_per_second": round(rate, 1), "wall_small": small["wall_seconds"],
                     "wall_large": large["wall_seconds"]})
    direct = rows[0]
    for row in rows:
        row["extra_fixed_seconds"] = round(row["fixed_seconds"] - direct["fixed_seconds"], 1)
        row["throughput_vs_direct"] = round(row["steady_pairs_per_second"] / direct["steady_pairs_per_second"], 2)
    return rows


def markdown(summary: list[dict], runs: list[dict], args: RayBenchmarkArguments) -> str:
    columns = ["configuration", "wall_small", "wall_large", "fixed_seconds", "extra_fixed_seconds",
               "steady_pairs_per_second", "throughput_vs_direct"]
    lines = [f"Reranker stage 1, {args.backend}, {args.teacher_dtype}, {runs[0]['pairs']} and {runs[-1]['pairs']} "
             f"WikiQA dev pairs, chunks of {args.chunk_size}; {os.cpu_count()} CPU(s)", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in summary]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_args(RayBenchmarkArguments, args=argv)
    output_dir = Path(args.output_dir)
    with tempfile.TemporaryDirectory() as scratch:
        # 1. teacher: a random Qwen3 of a realistic CPU shape
        model = build_qwen3(Path(scratch) / "teacher", **TEACHER_SHAPES["small"], seed=0)

        # 2. every configuration at both sizes, each in a fresh process
        configurations = [("direct", 1)] + [("ray", n) for n in args.replica_counts]
        runs = []
        for queries in args.sizes:
            for engine, replicas in configurations:
                run = run_score(args, model, queries, engine, replicas, Path(scratch) / f"{engine}-{replicas}-{queries}")
                logger.info("%s, %d replica(s), %d pairs: %.1f s", engine, replicas, run["pairs"], run["wall_seconds"])
                runs.append(run)

        # 3. same output whatever the engine; nothing left in /dev/shm
        for run in runs:
            reference = next(r for r in runs if r["engine"] == "direct" and r["queries"] == run["queries"])
            run["identical_to_direct"] = filecmp.cmp(run["output"], reference["output"], shallow=False)
            if not run["identical_to_direct"] or run["shm_left"]:
                raise RuntimeError(f"{run['engine']} x{run['replicas']}: identical {run['identical_to_direct']}, "
                                   f"/dev/shm left {run['shm_left']}")

    # 4. fixed cost and steady throughput per configuration; tables saved
    summary = summarise(runs)
    table = markdown(summary, runs, args)
    print(table)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "ray_overhead.md").write_text(table, encoding="utf-8")
    write_json(output_dir / "ray_overhead.json", {"arguments": asdict(args), "summary": summary, "runs": runs})
    logger.info("saved %s", output_dir / "ray_overhead.md")


if __name__ == "__main__":
    run_main(main)
