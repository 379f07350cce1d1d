"""Stage 1, sharded runs: join the shards of each stage-1 output into one file.

After `score.py ... --num_shards N --shard_id I` ran for every I (on as many machines or GPUs), this
checks that all N shards are there, finished, from the same run (inputs, teacher, settings) and disjoint, then
writes the output an unsharded run would have written, with its metadata marked complete. Pass the same
--train_files, --test_files and --output_dir (or --output_files) as stage 1:

    python merge_shards.py --train_files data/train.jsonl --test_files data/test.jsonl --output_dir output/reranker/teacher_scores
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.reranker.scoring import merge_shards, output_paths


@dataclass
class MergeArguments:
    train_files: str = field(default=None, metadata={"help": "Stage 1's --train_files, comma-separated."})
    test_files: str = field(default="", metadata={"help": "Stage 1's --test_files, comma-separated."})
    output_dir: str = field(default="output/reranker/teacher_scores", metadata={
        "help": "The stage-1 output folder (shards lie there as <name>.shard-I-of-N.jsonl)."})
    output_files: str = field(default=None, metadata={"help": "Or the stage-1 output paths, comma-separated."})


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_args(MergeArguments, args=argv)
    # 1. the outputs stage 1 was asked for
    train_files = split_paths(args.train_files)
    inputs = train_files + [path for path in split_paths(args.test_files) if path not in train_files]
    explicit = split_paths(args.output_files)
    if not inputs and not explicit:
        raise InputError(None, "give --train_files / --test_files (as in stage 1) or --output_files")
    outputs = output_paths(inputs or explicit, args.output_dir, explicit)
    # 2. check and join the shards of each
    for output in outputs:
        merge_shards(output)


if __name__ == "__main__":
    run_main(main)
