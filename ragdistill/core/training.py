"""What the training stages of both modules share: resuming from checkpoints, saving the training history
(log JSON + loss curve PNG), and describing the distillation in the saved model card."""

from __future__ import annotations

import os
from pathlib import Path

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import write_json
from ragdistill.core.plots import loss_curve

RESUME_LATEST = ("last", "latest", "true")


def resolve_resume_checkpoint(value: str | None, output_dir: str | os.PathLike) -> str | None:
    """--resume_from_checkpoint: a checkpoint folder, or 'last' for the newest checkpoint-* in output_dir."""
    if not value or str(value).lower() in ("false", "none"):
        return None
    if str(value).lower() in RESUME_LATEST:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(os.fspath(output_dir)) if Path(output_dir).is_dir() else None
        if last is None:
            raise InputError(output_dir, "--resume_from_checkpoint last: no checkpoint-* folder here to resume from")
        return last
    if not (Path(value) / "trainer_state.json").exists():
        raise InputError(value, "--resume_from_checkpoint: not a checkpoint folder (no trainer_state.json)")
    return os.fspath(value)


def check_distributed(training_args) -> None:
    """Under torchrun every process must join one data-parallel run; on CPUs the Trainer only does that with
    --use_cpu true, and otherwise trains N separate copies that overwrite each other's output. Refuse that."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise InputError(None, f"launched as {launched} processes (torchrun) but the Trainer sees a world size of "
                               f"{training_args.world_size}: without GPUs add --use_cpu true for CPU (gloo) "
                               "data parallelism")


def save_training_history(log_history: list[dict], output_dir: str | os.PathLike,
                          title: str = "Training loss") -> dict[str, str]:
    """Write log_history.json and loss_curve.png into output_dir; return their paths."""
    output_dir = Path(output_dir)
    paths = {"log_history": os.fspath(output_dir / "log_history.json")}
    write_json(paths["log_history"], log_history)
    png = loss_curve(log_history, output_dir / "loss_curve.png", title=title)
    if png is not None:
        paths["loss_curve"] = os.fspath(png)
    return paths


def describe_distillation(model, student: str, teacher: str, train_file: str | os.PathLike) -> None:
    """Name the model, its teacher and its training data in the model card written when the model is saved
    (works for SentenceTransformer and CrossEncoder alike)."""
    card = model.model_card_data
    card.model_name = f"{Path(student.rstrip('/')).name} distilled from {Path(teacher.rstrip('/')).name}"
    card.tags = list(dict.fromkeys([*(card.tags or []), "distillation", "knowledge-distillation", "ragdistill"]))
    card.train_datasets = [{"name": f"{Path(train_file).name} (labels: {teacher} similarity scores)"}]
