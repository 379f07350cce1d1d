"""The comparison table and the ranking metrics behind the teacher row."""

from __future__ import annotations

import json

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
