"""What every stage script does around its main: argument dataclasses in, readable log messages, one-line errors
out."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ragdistill.core.errors import InputError

T = TypeVar("T")


def parse_args(*dataclass_types: type, args: list[str] | None = None, defaults: dict | None = None) -> tuple:
    """Parse argument dataclasses with transformers' HfArgumentParser (every field is a --flag; --help lists them).

    `defaults` sets a stage's own defaults for fields of a dataclass several stages share (e.g. each pipeline's
    model folder). A single argument ending in .json or .yaml is read as a config file instead, as in
    transformers' examples.
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types)
    parser.set_defaults(**(defaults or {}))
    argv = sys.argv[1:] if args is None else args
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = Path(argv[0]).resolve()
        try:
            if path.suffix == ".json":
                values = json.loads(path.read_text(encoding="utf-8"))
            else:
                import yaml

                values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(path, f"unreadable config file ({exc})") from None
        return parser.parse_dict({**(defaults or {}), **values})
    return parser.parse_args_into_dataclasses(args=argv)


class _ReadableFormatter(logging.Formatter):
    """Plain messages for progress, a level prefix only where it tells something (warnings, errors)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


def main_process() -> bool:
    """False on the other ranks of a torchrun launch (they train too, but the main process speaks)."""
    return int(os.environ.get("RANK", "0")) == 0


def remove_stage_logging() -> None:
    """Remove the handlers setup_logging added: it calls this first (a second run_main in one process replaces its
    handlers, not doubles them); tests call it when a stage ran in their process."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_ragdistill", False)]:
        root.removeHandler(handler)


def setup_logging(script: str = "__main__") -> None:
    """Messages of this project and of the stage script (`script`: its module name) at INFO on the main process,
    WARNING on other ranks; other libraries at WARNING. Progress goes to stdout, beside the tables; warnings and
    errors to stderr."""
    remove_stage_logging()
    root = logging.getLogger()
    progress, problems = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    progress.addFilter(lambda record: record.levelno < logging.WARNING)
    problems.setLevel(logging.WARNING)
    for handler in (progress, problems):
        handler.setFormatter(_ReadableFormatter())
        handler._ragdistill = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    level = logging.INFO if main_process() else logging.WARNING
    for name in ("ragdistill", script):
        logging.getLogger(name).setLevel(level)
    quiet_weight_loading()


class _NewWeightsReport(logging.Filter):
    """Drops transformers' LOAD REPORT when all it lists are weights a stage creates or leaves out on purpose: newly
    initialised ones (MISSING, e.g. the fresh one-label head a CrossEncoder puts on a plain encoder) and unused ones
    (UNEXPECTED, e.g. a checkpoint's pretraining head). Our stages say in their own words what is new. A report of
    mismatched or unconverted weights stays (transformers raises after it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "LOAD REPORT" not in message or any(problem in message for problem in ("MISMATCH", "CONVERSION"))


class _CrossEncoderFromEmbedder(logging.Filter):
    """Drops sentence-transformers' note that a SentenceTransformer folder is loaded as a CrossEncoder: a stage that
    does it means to (a plain encoder as a reranker student, with a new head) and says so in its own words."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Converting SentenceTransformer model") and message.endswith("CrossEncoder."))


# transformers' bars for each model load and save: a second long, one per model, they tell a reader nothing.
_QUIET_BARS = ("Loading weights", "Writing model shards")


def _no_loading_bar(factory, args, kwargs):
    if kwargs.get("desc") in _QUIET_BARS:
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def quiet_weight_loading() -> None:
    """No load reports for weights meant to be new, no progress bar per model load or save (downloads keep theirs),
    and no warning a user cannot act on: torch's note that pinned memory needs an accelerator (the Trainer asks for
    it on every device)."""
    warnings.filterwarnings("ignore", message="'pin_memory' argument is set as true but no accelerator is found")
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # the data stage runs without transformers
        return
    transformers_logging.get_logger()  # sets up transformers' own handler, where its records are written
    library = logging.getLogger("transformers")
    for target in (library, *library.handlers, *logging.getLogger().handlers):
        if not any(isinstance(f, _NewWeightsReport) for f in target.filters):
            target.addFilter(_NewWeightsReport())
    transformers_logging.set_tqdm_hook(_no_loading_bar)
    loader = logging.getLogger("sentence_transformers.base.model")
    if not any(isinstance(f, _CrossEncoderFromEmbedder) for f in loader.filters):
        loader.addFilter(_CrossEncoderFromEmbedder())


def run_main(main: Callable[[], T]) -> T:
    """Run a stage's main with logging set up; bad input prints one line naming file, line and problem, and exits
    with status 2."""
    setup_logging(main.__module__)
    try:
        return main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


def split_paths(value: str | list[str] | None) -> list[str]:
    """Accept 'a.jsonl,b.jsonl' or a list (bash wrappers pass comma-separated lists)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]
