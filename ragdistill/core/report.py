"""Tables: one plain-text and one Markdown layout for every table of the project, and the before / after / teacher
comparison both pipelines print and save (JSON and Markdown)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.jsonl import atomic_open, write_json

logger = logging.getLogger(__name__)


def format_number(value: float | None, digits: int = 4) -> str:
    """A table cell: `digits` decimals ('-' for a missing or NaN value; large values as whole numbers)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:,.0f}"


def _aligned(text_columns: int | Collection[int], width: int) -> list[bool]:
    """Which of `width` columns hold text (left-aligned); the others hold numbers (right-aligned)."""
    if isinstance(text_columns, int):
        return [i < text_columns for i in range(width)]
    return [i in text_columns for i in range(width)]


def to_text(headers: Sequence[str], rows: Sequence[Sequence], title: str | None = None,
            text_columns: int | Collection[int] = 1, notes: Sequence[str] = ()) -> str:
    """Every plain-text table of the project: title, rules, text columns (the first `text_columns`, or those
    indices) left-aligned, numbers right-aligned, then one `note:` line per note."""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    text = _aligned(text_columns, len(headers))

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if left else c.rjust(w) for c, w, left in zip(row, widths, text)).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    lines = ([title] if title else []) + [rule, line(cells[0]), rule, *map(line, cells[1:]), rule]
    return "\n".join(lines + [f"note: {note}" for note in notes])


def to_markdown(headers: Sequence[str], rows: Sequence[Sequence], title: str | None = None, notes: Sequence[str] = (),
                text_columns: int | Collection[int] = 1) -> str:
    """The same table in Markdown: a `###` title, numbers right-aligned, notes as a list."""
    text = _aligned(text_columns, len(headers))
    lines = ([f"### {title}", ""] if title else []) + ["| " + " | ".join(map(str, headers)) + " |",
                                                       "|" + "|".join("---" if left else "---:" for left in text) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


@dataclass
class Comparison:
    """Metrics of a student before and after training, next to the teacher's.

    `higher_is_better` metrics (quality, throughput) get absolute and relative change, and the share of the
    teacher-student gap the training closed: (after - before) / (teacher - before).
    """

    title: str
    before: dict[str, float]
    after: dict[str, float]
    teacher: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        rows = []
        for name in self.before:
            before, after, teacher = self.before[name], self.after.get(name), self.teacher.get(name)
            row = {"metric": name, "before": before, "after": after, "teacher": teacher,
                   "change": None, "relative_change": None, "gap_closed": None}
            if after is not None:
                row["change"] = after - before
                row["relative_change"] = (after - before) / abs(before) if before else None
                if teacher is not None and not name.endswith("/s") and abs(teacher - before) > 1e-12:
                    row["gap_closed"] = (after - before) / (teacher - before)
            rows.append(row)
        return rows

    def cells(self) -> tuple[list[str], list[list[str]]]:
        headers = ["metric", "before", "after", "change", "relative", "teacher", "gap closed"]
        rows = [[row["metric"], format_number(row["before"]), format_number(row["after"]),
                 "-" if row["change"] is None else f"{row['change']:+.4f}",
                 "-" if row["relative_change"] is None else f"{row['relative_change']:+.1%}",
                 format_number(row["teacher"]),
                 "-" if row["gap_closed"] is None else f"{row['gap_closed']:.0%}"] for row in self.rows()]
        return headers, rows

    def to_markdown(self) -> str:
        return to_markdown(*self.cells(), self.title, self.notes)

    def to_text(self) -> str:
        return to_text(*self.cells(), self.title, notes=self.notes)

    def to_json(self) -> dict:
        return {"title": self.title, "before": self.before, "after": self.after, "teacher": self.teacher,
                "rows": self.rows(), "notes": self.notes}


def save_comparisons(comparisons: list[Comparison], output_dir: str | os.PathLike, name: str = "results",
                     extra: dict | None = None) -> tuple[Path, Path]:
    """Print every table and save them all as <name>.json and <name>.md in output_dir; return both paths."""
    output_dir = Path(output_dir)
    for comparison in comparisons:
        print("\n" + comparison.to_text())
    json_path, md_path = output_dir / f"{name}.json", output_dir / f"{name}.md"
    write_json(json_path, {"tables": [c.to_json() for c in comparisons], **(extra or {})})
    with atomic_open(md_path) as handle:
        handle.write("\n".join(c.to_markdown() for c in comparisons))
    logger.info(f"saved {json_path} and {md_path}")
    return json_path, md_path


AGREEMENT_NOTE = ("agreement with the teacher, no labels needed: NDCG@10 of the student's ranking with the teacher's "
                  "scores as graded relevance (scaled to [0, 1] per query), Spearman's and Kendall's rank correlation "
                  "of the scores; mean over queries")


def agreement_comparison(title: str, before: Sequence[Sequence[float]], after: Sequence[Sequence[float]],
                         teacher: Sequence[Sequence[float]], notes: Sequence[str] = ()) -> Comparison:
    """Before / after agreement of a student's per-query scores with the teacher's (ragdistill.core.metrics.
    teacher_agreement), with the teacher's own row (1.0: the ceiling the gap closed is measured against)."""
    from ragdistill.core.metrics import teacher_agreement

    rows = {label: teacher_agreement(list(zip(scores, teacher)))
            for label, scores in (("before", before), ("after", after), ("teacher", teacher))}
    return Comparison(title=title, before=rows["before"], after=rows["after"], teacher=rows["teacher"],
                      notes=[*notes, AGREEMENT_NOTE])
