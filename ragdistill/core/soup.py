"""A model soup: the uniform average of the weights of several students trained from the same start on the same rows
with different seeds (Wortsman et al., 2022, "Model soups"), saved as one model of their kind (a SentenceTransformer
or a CrossEncoder folder). The train stage of both pipelines makes one when given several seeds (`SEEDS` in
train.sh, scripts/common.sh); measured: docs/quality/label-free.md, "Seeds averaged in weight space".

    python -m ragdistill.core.soup --models runs/seed-1,runs/seed-2,runs/seed-3 --output_dir runs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ragdistill.core.cli import run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.core.models import require_model_dir

logger = logging.getLogger(__name__)

RECORD = "soup.json"  # written last: the soup is complete
# A member's own training record (its steps, its loss), not the soup's; folders (and hidden files, such as the
# wrapper's mark of a member trained to the end) that are no part of the model.
MEMBER_ONLY_FILES = {"log_history.json", "loss_curve.png", "training_summary.json", "training_args.bin", RECORD}
NOT_MODEL_DIRS = ("checkpoint-", "seed-", "onnx", "openvino", ".")


def model_files(folder: Path) -> list[Path]:
    """The files that make up a saved model in `folder` (relative paths): its weights, configs, tokenizer and card,
    without checkpoints, member folders, exported variants or a member's training record."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(NOT_MODEL_DIRS) for part in relative.parts[:-1]) \
                and relative.name not in MEMBER_ONLY_FILES and not relative.name.startswith("."):
            files.append(relative)
    return files


def average_models(members: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> Path:
    """Average every floating-point tensor of the members' .safetensors files (in float64, saved in each tensor's
    own dtype); other tensors must be equal, and every member must hold the same weight files, tensor names and
    shapes. The other files (configs, tokenizer, card) are copied from the first member. The previous model in `output_dir` is removed first and `soup.json` (the
    members) written last, so a crash leaves no complete-looking soup. Returns the record's path."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    members = [Path(member) for member in members]
    if len(members) < 2:
        raise InputError(None, f"a soup needs at least two students to average, got {len(members)}")
    for member in members:
        require_model_dir(os.fspath(member), "trained student")
    files = model_files(members[0])
    weights = [name for name in files if name.suffix == ".safetensors"]
    if not weights:
        raise InputError(members[0], "no .safetensors weights in this folder")
    for member in members[1:]:
        if {name for name in model_files(member) if name.suffix == ".safetensors"} != set(weights):
            raise InputError(member, f"its weight files differ from {members[0]}'s: a soup averages students of "
                                     "one architecture")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    for name in [*MEMBER_ONLY_FILES, *files]:  # the previous model (and a single run's record) goes first
        (output / name).unlink(missing_ok=True)

    for name in weights:
        with safe_open(members[0] / name, framework="pt") as first:
            metadata = first.metadata()
            total = {key: first.get_tensor(key) for key in first.keys()}  # noqa: SIM118 (a file handle, not a dict)
        dtypes = {key: tensor.dtype for key, tensor in total.items()}
        total = {key: tensor.double() if tensor.is_floating_point() else tensor for key, tensor in total.items()}
        for member in members[1:]:
            with safe_open(member / name, framework="pt") as handle:
                if set(handle.keys()) != set(total):
                    raise InputError(member / name, f"its tensors differ from {members[0] / name}'s")
                for key in total:
                    tensor = handle.get_tensor(key)
                    if tensor.shape != total[key].shape:
                        raise InputError(member / name, f"{key} has shape {tuple(tensor.shape)}, "
                                                        f"{members[0]}'s {tuple(total[key].shape)}")
                    if tensor.is_floating_point():
                        total[key] += tensor.double()
                    elif not torch.equal(tensor, total[key]):
                        raise InputError(member / name, f"{key} (not a weight) differs from {members[0]}'s")
        averaged = {key: (tensor / len(members)).to(dtypes[key]) if tensor.is_floating_point() else tensor
                    for key, tensor in total.items()}
        target = output / name
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(averaged, target, metadata=metadata)
    for name in files:
        if name.suffix != ".safetensors":
            (output / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(members[0] / name, output / name)
    card = output / "README.md"
    if card.exists():
        with card.open("a", encoding="utf-8") as handle:
            handle.write(f"\n## Model soup\n\nThe weights are the uniform average of {len(members)} students trained "
                         f"alike with different seeds: {', '.join(member.name for member in members)}.\n")
    record = output / RECORD
    partial = record.with_name(record.name + ".partial")
    partial.write_text(json.dumps({"members": [os.fspath(member) for member in members]}, indent=1) + "\n")
    os.replace(partial, record)
    logger.info(f"averaged {len(members)} students into {output}")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="comma-separated model folders (2 or more), trained alike")
    parser.add_argument("--output_dir", required=True, help="where the averaged student is saved")
    args = parser.parse_args(argv)
    average_models(split_paths(args.models), args.output_dir)


if __name__ == "__main__":
    run_main(main)
