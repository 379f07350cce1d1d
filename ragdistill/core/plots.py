"""PNG pictures that say more than a table: teacher vs student scores, and the training loss curve."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # headless: servers have no display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Lay out, write as PNG (its folder made if missing) and close: every picture of the project ends here."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def score_scatter(teacher_scores: Sequence[float], student_scores: dict[str, Sequence[float]],
                  path: str | os.PathLike, title: str = "Teacher vs student scores") -> Path:
    """One panel per student (e.g. 'before', 'after'): teacher score on x, student score on y, with Spearman rho."""
    from scipy.stats import spearmanr

    plt = pyplot()
    teacher = np.asarray(teacher_scores, dtype=float)
    fig, axes = plt.subplots(1, len(student_scores), figsize=(5 * len(student_scores), 4.5), squeeze=False)
    for ax, (label, scores) in zip(axes[0], student_scores.items()):
        scores = np.asarray(scores, dtype=float)
        rho = spearmanr(teacher, scores).statistic if len(teacher) > 1 else float("nan")
        ax.scatter(teacher, scores, s=6, alpha=0.4)
        ax.set_xlabel("teacher score")
        ax.set_ylabel("student score")
        ax.set_title(f"{label} (Spearman {rho:.3f})")
    fig.suptitle(title)
    return save_figure(fig, path)


def _points(count: int, what: str = "") -> str:
    return f"{count} {what}{' ' if what else ''}point{'' if count == 1 else 's'}"


def loss_curve(log_history: list[dict], path: str | os.PathLike, title: str = "Training loss") -> Path | None:
    """Plot 'loss' (and 'eval_loss' if logged) against the step from a Trainer's state.log_history.

    Every logged point gets a marker and the legend and title say how many were logged: a short run logs one
    point (or none but the run's mean, Trainer's final 'train_loss', drawn then as one point), and a line
    through one point draws nothing."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    label = "train loss"
    if not train:
        train = [(e["step"], e["train_loss"]) for e in log_history if "train_loss" in e and "step" in e][-1:]
        label = "train loss (mean of the run)"
    if not train and not evals:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), marker="o", markersize=4 if len(train) > 30 else 6, label=f"{label}, {_points(len(train))}")
    if evals:
        ax.plot(*zip(*evals), marker="s", label=f"eval loss, {_points(len(evals))}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    logged = ", ".join(_points(len(series), name) for name, series in (("train", train), ("eval", evals)) if series)
    ax.set_title(f"{title}\n(logged: {logged})")
    ax.grid(alpha=0.3)
    ax.margins(x=0.1, y=0.1)  # a single point sits inside the axes, not on their edge
    ax.legend()
    return save_figure(fig, path)


def labelled_scatter(points: Sequence[tuple[float, float, str]], path: str | os.PathLike, xlabel: str, ylabel: str,
                     title: str, hlines: dict[str, float] | None = None) -> Path:
    """One labelled point per (x, y, label), e.g. quality against latency; `hlines` draws reference levels (a
    teacher's quality) as dashed lines. A log x axis when x spans more than 20x."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for x, y, label in points:
        ax.scatter([x], [y], s=60)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    for label, level in (hlines or {}).items():
        ax.axhline(level, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, (min(x for x, _, _ in points), level), textcoords="offset points", xytext=(0, 4),
                    fontsize=8, color="grey")
    xs = [x for x, _, _ in points]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(x=0.25, y=0.15)
    return save_figure(fig, path)
