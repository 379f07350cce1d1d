"""Stage 2: training rows for the student from the teacher's scores (stage-1 output).

Per query, passages are ranked by teacher score; the top --top_k are positives, each paired with --num_negatives
lower-scored passages (the next ones: hardest; or --negative_sampling random, seeded). Formats:

- ntuple (default): query, positive, negative_1..n, label = [s_pos, s_neg_1, ..., s_neg_n]: MarginMSELoss
  computes the n margins itself and encodes the positive once per row;
- triplet: query, positive, negative, score = s_pos - s_neg (one row per pair of passages);
- listwise: query, documents, scores (ListNetLoss, LambdaLoss).

    python rows.py --teacher_scores output/reranker/teacher_scores/train.scores.jsonl \
        --output_file output/reranker/training_rows.jsonl

Streams query by query; same inputs and --seed give byte-identical output. Writes <output>.meta.json beside it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ragdistill.core.arguments import parse_num_negatives
from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.data.pseudo_queries import ROUND_TRIP_TOP
from ragdistill.reranker.rows import RowSettings, build_rows

logger = logging.getLogger(__name__)


@dataclass
class TrainingRowArguments:
    teacher_scores: str = field(default=None, metadata={
        "help": "Stage-1 score files (finished ones), comma-separated; after sharded runs, the output of the join "
                "run (score.py without shard flags)."})
    output_file: str = field(default="output/reranker/training_rows.jsonl", metadata={
        "help": "Where the rows go (.jsonl or .jsonl.gz)."})
    format: str = field(default="listwise", metadata={"help": "listwise (for listnet / lambda), ntuple or triplet."})
    top_k: int = field(default=8, metadata={"help": "Passages per query used as positives (by teacher score)."})
    num_negatives: str = field(default="auto", metadata={
        "help": "Listwise: passages after the top --top_k; ntuple / triplet: negatives per positive. A count, 'all' "
                "(listwise and triplet rows: every lower-scored passage), or 'auto': 32 for listwise rows (every "
                "candidate of most reranking sets), 4 for the others. Embedding-Distillation's rows default to 8 "
                "negatives, the width of its ntuple rows; a listwise row here holds a query's whole list."})
    negative_sampling: str = field(default="hard", metadata={
        "help": "hard: the next lower-scored passages; random: drawn from all lower-scored ones (--seed)."})
    seed: int = field(default=42, metadata={"help": "Seed of the random negative sampling."})
    round_trip_top: int = field(default=ROUND_TRIP_TOP, metadata={
        "help": "Pseudo-queries (their lines name a source document): kept only if the teacher ranks the source "
                "among its top N passages (the round-trip filter)."})
    skip_invalid: bool = field(default=False, metadata={
        "help": "Skip bad rows (NaN/inf scores, malformed lines), counted and reported, instead of stopping."})


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_args(TrainingRowArguments, args=argv)
    start = time.perf_counter()
    # 1. inputs
    teacher_scores = split_paths(args.teacher_scores)
    if not teacher_scores:
        raise InputError(None, "give --teacher_scores (stage-1 outputs, comma-separated)")
    # 2. rows, streamed query by query
    auto = 32 if args.format == "listwise" else 4
    num_negatives = parse_num_negatives(args.num_negatives, auto, zero=auto)
    settings = RowSettings(format=args.format, top_k=args.top_k, num_negatives=num_negatives,
                           negative_sampling=args.negative_sampling, seed=args.seed,
                           round_trip_top=args.round_trip_top)
    stats = build_rows(teacher_scores, args.output_file, settings, skip_invalid=args.skip_invalid)
    # 3. report
    logger.info(f"{args.output_file}: {stats.rows} {settings.format} rows from {stats.scored_pairs} scored pairs of "
          f"{stats.queries} queries ({time.perf_counter() - start:.1f} s)")
    if stats.positives_without_full_negatives:
        logger.info(f"  {stats.positives_without_full_negatives} positive(s) had fewer than {settings.num_negatives} "
              "lower-scored passages left and got no row")
    if stats.round_trip_checked:
        logger.info(f"  round-trip filter: kept {stats.round_trip_checked - stats.round_trip_dropped} of "
                    f"{stats.round_trip_checked} pseudo-queries "
                    f"(dropped {stats.round_trip_dropped} whose source the teacher ranked below its top "
                    f"{settings.round_trip_top})")
    if stats.queries_too_small:
        logger.info(f"  {stats.queries_too_small} query(ies) with fewer than two passages skipped")


if __name__ == "__main__":
    run_main(main)
