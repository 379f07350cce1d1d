"""What the training stages of both modules share: resuming from checkpoints, LoRA adapters (peft) merged into the
saved model, and the training record beside it (log JSON, loss curve PNG, the model card's distillation section)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import write_json
from ragdistill.core.plots import loss_curve

logger = logging.getLogger(__name__)

RESUME_LATEST = ("last", "latest", "true")
# The trainer settings both train stages start from, in place of transformers' own defaults (each stage adds the
# epochs and learning rate measured for its students): 16 rows per device and step, a warm-up over the first tenth
# of the steps, the loss logged every 10 steps (the loss curve's points), the last two checkpoints kept, no tracker.
TRAINER_DEFAULTS = {"per_device_train_batch_size": 16, "warmup_steps": 0.1, "logging_steps": 10,
                    "save_strategy": "steps", "save_steps": 500, "save_total_limit": 2, "report_to": "none"}


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


def describe_distillation(model, student: str, teacher: str, train_files: Sequence[str | os.PathLike],
                          tags: Sequence[str] = ()) -> None:
    """Name the model, its teacher and its training data in the model card written when the model is saved
    (works for SentenceTransformer and CrossEncoder alike)."""
    card = model.model_card_data
    card.model_name = f"{Path(student.rstrip('/')).name} distilled from {Path(teacher.rstrip('/')).name}"
    card.tags = list(dict.fromkeys([*(card.tags or []), "distillation", "knowledge-distillation", "ragdistill",
                                    *tags]))
    card.train_datasets = [{"name": f"{Path(path).name} (labels: {teacher} scores)"} for path in train_files]


def save_training_record(output_dir: str | os.PathLike, log_history: list[dict], facts: Sequence[str],
                         title: str = "Training loss") -> dict[str, str]:
    """Beside the saved model: log_history.json, loss_curve.png, and a "Distillation" section in its model card
    (README.md) listing `facts` (student, teacher, instruction, data, loss, ...). Returns the files' paths."""
    output_dir = Path(output_dir)
    paths = save_training_history(log_history, output_dir, title=title)
    if "loss_curve" not in paths:
        logger.warning("no loss was logged (fewer steps than --logging_steps): no loss curve drawn")
    section = "## Distillation\n\n" + "".join(f"- {fact}\n" for fact in facts)
    readme = output_dir / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    # Near the top, where readers look: before the generated "Model Details" if there is one.
    anchor = text.find("\n## Model Details")
    if anchor >= 0:
        text = text[:anchor] + "\n" + section + text[anchor:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    readme.write_text(text, encoding="utf-8")
    paths["model_card"] = os.fspath(readme)
    return paths


@dataclass
class LoraArguments:
    """LoRA adapters (peft) for students too big to train whole; merged into the saved model."""

    lora_r: int = field(default=0, metadata={
        "help": "LoRA rank; 0 = off (every weight trains). With r > 0 only the adapters train, and they are merged "
                "into the saved model, which then loads like any model of its kind."})
    lora_alpha: float = field(default=0.0, metadata={"help": "LoRA scaling numerator (alpha / r); 0 = 2 x r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the adapters' input."})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "Comma-separated module names to adapt (e.g. q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                "down_proj), or all-linear: every linear layer but the output layer."})

    def __post_init__(self):
        if self.lora_r < 0 or self.lora_alpha < 0 or not 0 <= self.lora_dropout < 1:
            raise InputError(None, "--lora_r and --lora_alpha must be 0 or more, --lora_dropout in [0, 1)")
        if self.lora_r and not self.lora_target_modules.strip():
            raise InputError(None, "--lora_target_modules is empty")

    @property
    def enabled(self) -> bool:
        return self.lora_r > 0

    def describe(self) -> str:
        return (f"LoRA r={self.lora_r}, alpha={self.lora_alpha or 2 * self.lora_r:g}, dropout={self.lora_dropout:g}, "
                f"modules {self.lora_target_modules}")


def add_lora(model, lora: LoraArguments) -> None:
    """Freeze the model and add LoRA adapters to it (a SentenceTransformer or a CrossEncoder), if asked."""
    if not lora.enabled:
        return
    from peft import LoraConfig

    targets = lora.lora_target_modules.strip()
    targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    try:
        model.add_adapter(LoraConfig(r=lora.lora_r, lora_alpha=lora.lora_alpha or 2 * lora.lora_r,
                                     lora_dropout=lora.lora_dropout, target_modules=targets))
    except ValueError as exc:  # peft: no module matches the targets
        raise InputError(None, f"--lora_target_modules {lora.lora_target_modules}: {exc}") from None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("%s: %s of %s parameters train (%.2f%%)", lora.describe(), f"{trainable:,}", f"{total:,}",
                100 * trainable / total)


def merge_lora(model) -> bool:
    """Merge the LoRA adapters into the weights they adapt and drop them, so the model saves (and loads) as a plain
    model of its kind. Returns whether there was anything to merge."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    backbone = model.transformers_model
    layers = [(name, module) for name, module in backbone.named_modules() if isinstance(module, BaseTunerLayer)]
    if not layers:
        return False
    for _, layer in layers:
        layer.merge()
    # Deleting every adapter also tells transformers that the model carries none (else it saves only the adapters).
    backbone.delete_adapter(backbone.active_adapters())
    for name, layer in layers:
        backbone.set_submodule(name, layer.get_base_layer(), strict=True)
    return True
