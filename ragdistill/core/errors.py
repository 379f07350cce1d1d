"""One error type for bad input, so every stage can report it the same way: file, line, problem."""

from __future__ import annotations

import os
import re


class InputError(Exception):
    """Bad input the user must fix. The message names the file, the line (when there is one) and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str, line: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.problem = problem
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {problem}")


class SkipCounter:
    """Counts rows skipped under --skip_invalid, by reason, and prints a summary at the end of a stage."""

    def __init__(self, skip_invalid: bool):
        self.skip_invalid = skip_invalid
        self.by_reason: dict[str, int] = {}
        self.examples: list[str] = []

    def handle(self, error: InputError) -> None:
        """Raise `error` unless skipping is on; then count it."""
        if not self.skip_invalid:
            raise error
        reason = re.split(r"[:(]", error.problem, maxsplit=1)[0].strip()  # the kind of problem, without details
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def summary(self) -> str:
        if not self.total:
            return "no invalid rows"
        lines = [f"skipped {self.total} invalid row(s):"]
        lines += [f"  {count:>6}  {reason}" for reason, count in sorted(self.by_reason.items())]
        lines += ["  first examples:"] + [f"    {example}" for example in self.examples]
        return "\n".join(lines)
