"""The before / after / teacher comparison table shared by both modules: printed, and saved as JSON and Markdown."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.jsonl import atomic_open, write_json

logger = logging.getLogger(__name__)


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:,.0f}"


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

    def to_markdown(self) -> str:
        header = "| metric | before | after | change | relative | teacher | gap closed |"
        lines = [f"### {self.title}", "", header, "|---|---:|---:|---:|---:|---:|---:|"]
        for row in self.rows():
            rel = "-" if row["relative_change"] is None else f"{row['relative_change']:+.1%}"
            gap = "-" if row["gap_closed"] is None else f"{row['gap_closed']:.0%}"
            change = "-" if row["change"] is None else f"{row['change']:+.4f}"
            lines.append(f"| {row['metric']} | {_fmt(row['before'])} | {_fmt(row['after'])} | {change} | {rel} "
                         f"| {_fmt(row['teacher'])} | {gap} |")
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def to_text(self) -> str:
        rows = self.rows()
        headers = ["metric", "before", "after", "change", "relative", "teacher", "gap closed"]
        table = [headers]
        for row in rows:
            table.append([
                row["metric"], _fmt(row["before"]), _fmt(row["after"]),
                "-" if row["change"] is None else f"{row['change']:+.4f}",
                "-" if row["relative_change"] is None else f"{row['relative_change']:+.1%}",
                _fmt(row["teacher"]),
                "-" if row["gap_closed"] is None else f"{row['gap_closed']:.0%}",
            ])
        widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
        rule = "-" * (sum(widths) + 3 * (len(widths) - 1))
        out = [self.title, rule]
        for i, r in enumerate(table):
            out.append("   ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
            if i == 0:
                out.append(rule)
        out.append(rule)
        out += [f"note: {note}" for note in self.notes]
        return "\n".join(out)

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
