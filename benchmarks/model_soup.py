"""A model soup: the uniform average of the weights of several students trained from the same start with different
seeds (Wortsman et al., 2022, "Model soups"), saved as one SentenceTransformer. It measures how much of one run's
seed noise averaging removes (docs/quality/label-free.md, "Seeds averaged in weight space"); evaluate the soup with
Embedding-Distillation/evaluation.sh (`MODEL_DIR=<output_dir>`).

    python benchmarks/model_soup.py --models runs/seed-1/model,runs/seed-2/model,runs/seed-3/model \
        --output_dir runs/soup/model
"""

from __future__ import annotations

import argparse
import logging

from ragdistill.core.cli import run_main, split_paths
from ragdistill.core.errors import InputError

logger = logging.getLogger(__name__)


def average_students(paths: list[str], output_dir: str) -> None:
    """Load each student in turn (one in memory beside the running sum), average every floating-point weight, and
    save the first student's model with the averaged weights to `output_dir`."""
    from sentence_transformers import SentenceTransformer

    from ragdistill.core.models import require_model_dir

    if len(paths) < 2:
        raise InputError(None, f"--models needs at least two students to average, got {len(paths)}")
    for path in paths:
        require_model_dir(path, "student model")
    first = SentenceTransformer(paths[0], device="cpu")
    total = {name: value.double() for name, value in first.state_dict().items() if value.is_floating_point()}
    for path in paths[1:]:
        state = SentenceTransformer(path, device="cpu").state_dict()
        shapes = {name: tuple(value.shape) for name, value in state.items() if value.is_floating_point()}
        if shapes != {name: tuple(value.shape) for name, value in total.items()}:
            raise InputError(path, f"its weights differ in names or shapes from {paths[0]}'s: a soup averages "
                                   "students of one architecture trained from the same start")
        for name in total:
            total[name] += state[name].double()
    reference = first.state_dict()
    first.load_state_dict({name: (total[name] / len(paths)).to(value.dtype) if name in total else value
                           for name, value in reference.items()})
    first.save(output_dir)
    logger.info(f"averaged {len(paths)} students into {output_dir}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="comma-separated SentenceTransformer folders (2 or more)")
    parser.add_argument("--output_dir", required=True, help="where the averaged student is saved")
    args = parser.parse_args(argv)
    average_students(split_paths(args.models), args.output_dir)


if __name__ == "__main__":
    run_main(main)
