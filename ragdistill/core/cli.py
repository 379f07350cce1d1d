"""What every stage script does around its main: argument dataclasses in, one-line errors out."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from ragdistill.core.errors import InputError

T = TypeVar("T")


def parse_args(*dataclass_types: type, args: list[str] | None = None) -> tuple:
    """Parse argument dataclasses with transformers' HfArgumentParser (every field is a --flag; --help lists them).

    A single argument ending in .json or .yaml is read as a config file instead, as in transformers' examples.
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types)
    argv = sys.argv[1:] if args is None else args
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def run_main(main: Callable[[], T]) -> T:
    """Run a stage's main; bad input prints one line naming file, line and problem, and exits with status 2."""
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
