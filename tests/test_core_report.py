"""The comparison table and the ranking metrics behind the teacher row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragdistill.core.metrics import query_metrics, ranking_metrics
from ragdistill.core.report import Comparison, save_comparisons


def test_comparison_changes_and_gap_closed(tmp_path, capsys):
    table = Comparison("demo", before={"map": 0.4, "pairs/s": 100.0}, after={"map": 0.5, "pairs/s": 100.0},
                       teacher={"map": 0.6, "pairs/s": 10.0}, notes=["before: untrained head"])
    rows = {r["metric"]: r for r in table.rows()}
    assert rows["map"]["change"] == pytest.approx(0.1)
    assert rows["map"]["relative_change"] == pytest.approx(0.25)
    assert rows["map"]["gap_closed"] == pytest.approx(0.5)
    assert rows["pairs/s"]["gap_closed"] is None  # speed has no "gap to close"
    json_path, md_path = save_comparisons([table], tmp_path, "results")
    printed = capsys.readouterr().out
    assert "+25.0%" in printed and "50%" in printed and "untrained head" in printed
    saved = json.loads(json_path.read_text())
    assert saved["tables"][0]["rows"][0]["after"] == 0.5
    md = md_path.read_text()
    assert "| map | 0.4000 | 0.5000 | +0.1000 | +25.0% | 0.6000 | 50% |" in md


def test_metrics_known_values():
    # Relevant at ranks 2 and 3 of 4: AP = (1/2 + 2/3) / 2, MRR = 1/2.
    m = query_metrics([False, True, True, False], [0.9, 0.8, 0.7, 0.1])
    assert m["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["mrr@10"] == pytest.approx(0.5)
    ideal = 1 + 1 / np.log2(3)
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / ideal)
    # A relevant document beyond rank k gives MRR@k 0.
    assert query_metrics([False] * 3 + [True], [4, 3, 2, 1], at_k=2)["mrr@2"] == 0.0


def test_ranking_metrics_averages_and_skips_unjudgeable_queries():
    queries = [([True, False], [1.0, 0.0]), ([False, True], [1.0, 0.0]), ([True, True], [1.0, 0.0])]
    m = ranking_metrics(queries)
    assert m["map"] == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError):
        ranking_metrics([([True], [1.0])])


def test_one_text_and_markdown_layout_for_every_table():
    from ragdistill.core.report import to_markdown, to_text

    headers, rows = ["name", "note", "value"], [["a", "long note", "1.5"], ["bb", "x", "10.25"]]
    lines = to_text(headers, rows, "Title", text_columns=2, notes=["n1"]).splitlines()
    assert lines[0] == "Title" and lines[-1] == "note: n1"
    assert lines[1] == lines[3] == lines[-2] == "-" * len("name  long note  value")
    assert lines[2] == "name  note       value"
    assert lines[4:6] == ["a     long note    1.5", "bb    x          10.25"]  # text left, numbers right
    # a set of text columns: the last column left-aligned too
    assert to_text(headers, rows, text_columns={0, 2}).splitlines()[1] == "name       note  value"  # no title
    markdown = to_markdown(headers, rows, "Title", ["n1"], text_columns={0, 2})
    assert markdown == "### Title\n\n| name | note | value |\n|---|---:|---|\n| a | long note | 1.5 |\n" \
                       "| bb | x | 10.25 |\n\n- n1\n"


def test_loss_curve_of_a_run_that_logged_one_point_is_not_blank(tmp_path):
    """The demo's embedding run logs one loss point; a line through one point drew nothing."""
    import matplotlib.image

    from ragdistill.core.plots import loss_curve

    def drawn_pixels(history) -> int:
        """Train-loss pixels in the middle of the picture (where one point lands; the legend is in a corner)."""
        image = matplotlib.image.imread(loss_curve(history, tmp_path / "loss.png"))[..., :3]
        height, width = image.shape[:2]
        image = image[height // 3:2 * height // 3, width // 3:2 * width // 3]
        blue = np.array([0x1F, 0x77, 0xB4]) / 255  # matplotlib's first colour, the train loss
        return int((np.abs(image - blue).max(axis=2) < 0.05).sum())

    one_point = [{"step": 4, "loss": 0.7}, {"step": 4, "train_loss": 0.7, "train_runtime": 1.0}]
    assert drawn_pixels(one_point) > 20  # the marker
    # only the run's mean was logged (fewer steps than logging_steps): drawn as one point, and said so
    assert drawn_pixels([{"step": 3, "train_loss": 0.6}]) > 20
    assert loss_curve([{"step": 3, "train_runtime": 1.0}], tmp_path / "none.png") is None


def test_loss_curve_says_how_many_points_were_logged(monkeypatch, tmp_path):
    from ragdistill.core import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    plots.loss_curve([{"step": 4, "loss": 0.7}, {"step": 4, "eval_loss": 0.8}, {"step": 8, "eval_loss": 0.6}],
                     tmp_path / "loss.png")
    ax = figures[0].axes[0]
    assert "logged: 1 train point, 2 eval points" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train loss, 1 point", "eval loss, 2 points"]
    assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())
