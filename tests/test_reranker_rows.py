"""Stage 2 (training rows): positives and negatives by teacher score, the three formats, MarginMSELoss reading the
n-tuple labels as intended, seeded sampling, byte-identical output, bad scores, non-contiguous queries and
unfinished stage-1 output."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import dumps, read_json, write_json
from ragdistill.core.resumable import ChunkedJob, meta_path
from ragdistill.reranker.rows import RowSettings, build_rows

SCORES = [3.5, -1.0, 7.25, 0.5, 2.0, -4.0, 6.0, 1.25, -2.5, 4.75]  # passage i of query A has SCORES[i]
RANKED = sorted(range(10), key=lambda i: -SCORES[i])  # [2, 6, 9, 0, 4, 7, 3, 1, 8, 5]


def finished_scores(path: Path, rows: list[dict], lines: list[str] | None = None) -> Path:
    """A stage-1 output marked complete, as score.py leaves it."""
    path.write_text("".join(dumps(r) + "\n" for r in rows) if lines is None else "\n".join(lines) + "\n")
    write_json(meta_path(path), {"teacher": "tiny-teacher", "complete": True})
    return path


def scored(query: str, scores: list[float]) -> list[dict]:
    return [{"query": query, "passage": f"{query}-p{i}", "score": s} for i, s in enumerate(scores)]


@pytest.fixture
def score_file(tmp_path):
    return finished_scores(tmp_path / "train.scores.jsonl", scored("A", SCORES) + scored("B", [1.0, 2.0, 0.0]))


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ntuple_hard_negatives(score_file, tmp_path):
    out = tmp_path / "rows.jsonl"
    stats = build_rows([score_file], out, RowSettings(format="ntuple", top_k=3, num_negatives=2))
    rows = read_rows(out)
    a_rows = [r for r in rows if r["query"] == "A"]
    assert len(a_rows) == 3
    for rank, row in enumerate(a_rows):
        pos, n1, n2 = RANKED[rank], RANKED[rank + 1], RANKED[rank + 2]
        assert list(row) == ["query", "positive", "negative_1", "negative_2", "label"]
        assert (row["positive"], row["negative_1"], row["negative_2"]) == (f"A-p{pos}", f"A-p{n1}", f"A-p{n2}")
        assert row["label"] == [SCORES[pos], SCORES[n1], SCORES[n2]]
    # Query B has 3 passages: the top one gets 2 negatives, the second only 1 left, so no row (counted).
    assert [r["positive"] for r in rows if r["query"] == "B"] == ["B-p1"]
    assert stats.positives_without_full_negatives == 1 and stats.rows == 4 and stats.queries == 2
    meta = read_json(meta_path(out))
    assert meta["complete"] and meta["teachers"] == ["tiny-teacher"] and meta["rows"] == 4


def test_triplet_and_listwise(score_file, tmp_path):
    out = tmp_path / "triplets.jsonl"
    build_rows([score_file], out, RowSettings(format="triplet", top_k=2, num_negatives=3))
    rows = [r for r in read_rows(out) if r["query"] == "A"]
    assert len(rows) == 6
    assert rows[0] == {"query": "A", "positive": "A-p2", "negative": "A-p6", "score": 7.25 - 6.0}
    assert rows[5] == {"query": "A", "positive": "A-p6", "negative": "A-p4", "score": 6.0 - 2.0}

    out = tmp_path / "listwise.jsonl"
    build_rows([score_file], out, RowSettings(format="listwise", top_k=3, num_negatives=2))
    row = read_rows(out)[0]
    assert row["documents"] == [f"A-p{i}" for i in RANKED[:5]]
    assert row["scores"] == [SCORES[i] for i in RANKED[:5]]


def test_random_negatives_are_seeded_and_lower_scored(score_file, tmp_path):
    def run(name, seed):
        out = tmp_path / name
        build_rows([score_file], out, RowSettings(top_k=4, num_negatives=3, negative_sampling="random", seed=seed))
        return out

    first, again, other = run("a.jsonl", 1), run("b.jsonl", 1), run("c.jsonl", 2)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    for row in read_rows(first):
        labels = row["label"]
        assert all(negative <= labels[0] for negative in labels[1:])
    # Not simply the hardest ones.
    hard = tmp_path / "hard.jsonl"
    build_rows([score_file], hard, RowSettings(top_k=4, num_negatives=3))
    assert hard.read_bytes() != first.read_bytes()


def test_hard_rows_are_byte_identical(tmp_path):
    rng = random.Random(0)
    rows = [r for q in range(50) for r in scored(f"q{q}", [round(rng.gauss(0, 3), 3) for _ in range(12)])]
    source = finished_scores(tmp_path / "s.jsonl", rows)
    outputs = []
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        build_rows([source], tmp_path / name, RowSettings())
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]


def test_ntuple_labels_are_what_margin_mse_expects(score_file, tmp_path, tiny_models):
    """MarginMSELoss on our rows equals MSE between the student's and the teacher's margins, computed by hand."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.cross_encoder.data_collator import CrossEncoderDataCollator
    from sentence_transformers.cross_encoder.losses import MarginMSELoss

    from ragdistill.reranker.training import load_training_rows

    out = tmp_path / "rows.jsonl"
    build_rows([score_file], out, RowSettings(top_k=3, num_negatives=2))
    dataset, fmt = load_training_rows([str(out)], "margin_mse")
    assert fmt == "ntuple" and dataset.column_names == ["query", "positive", "negative_1", "negative_2", "label"]
    torch.manual_seed(0)
    model = CrossEncoder(str(tiny_models["bert"]), num_labels=1)
    model.eval()
    batch = CrossEncoderDataCollator(preprocess_fn=model.preprocess)(list(dataset))
    inputs = [batch[c] for c in dataset.column_names[:-1]]
    with torch.no_grad():
        labels_on_device = [label.to(model.device) for label in batch["label"]]  # as the Trainer moves them
        loss = MarginMSELoss(model)(inputs, labels_on_device)
        logits = {c: model.predict(list(zip(batch["query"], batch[c])), activation_fn=torch.nn.Identity(),
                                   convert_to_tensor=True) for c in ("positive", "negative_1", "negative_2")}
    labels = torch.tensor([row["label"] for row in read_rows(out)], device=model.device)
    student_margins = torch.stack([logits["positive"] - logits[c] for c in ("negative_1", "negative_2")], dim=1)
    teacher_margins = labels[:, :1] - labels[:, 1:]
    assert float(loss) == pytest.approx(float(((student_margins - teacher_margins) ** 2).mean()), rel=1e-5)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", '"high"', "null"])
def test_non_finite_scores_name_file_and_line(tmp_path, bad):
    lines = [dumps(r) for r in scored("A", [1.0, 2.0, 3.0])]
    lines[1] = lines[1].replace('"score": 2.0', f'"score": {bad}')
    source = finished_scores(tmp_path / "s.jsonl", [], lines)
    with pytest.raises(InputError, match=r"s\.jsonl:2: invalid score"):
        build_rows([source], tmp_path / "rows.jsonl", RowSettings(top_k=1, num_negatives=1))
    assert not (tmp_path / "rows.jsonl").exists()
    stats = build_rows([source], tmp_path / "rows.jsonl", RowSettings(top_k=1, num_negatives=1), skip_invalid=True)
    assert stats.skipped_rows == 1 and read_rows(tmp_path / "rows.jsonl")[0]["label"] == [3.0, 1.0]


def test_query_that_comes_back_is_an_error(tmp_path):
    rows = scored("A", [1.0, 2.0]) + scored("B", [1.0, 2.0]) + scored("A", [5.0])
    source = finished_scores(tmp_path / "s.jsonl", rows)
    with pytest.raises(InputError, match=r"s\.jsonl:5: query 'A' reappears after other queries"):
        build_rows([source], tmp_path / "rows.jsonl", RowSettings(top_k=1, num_negatives=1))


def test_unfinished_stage1_output_is_refused(tmp_path):
    output = tmp_path / "train.scores.jsonl"
    job = ChunkedJob(output, "fp", num_items=10, chunk_size=4)
    job.save_chunk(0, lambda handle: handle.write(dumps({"query": "A", "passage": "p", "score": 1.0}) + "\n"))
    with pytest.raises(InputError, match=r"incomplete: stage 1 stopped after 1 of 3 chunks\. Re-run score"):
        build_rows([output], tmp_path / "rows.jsonl", RowSettings())
    output.write_text(dumps({"query": "A", "passage": "p", "score": 1.0}) + "\n")
    (output.parent / f"{output.name}.parts").rename(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="no 'train.scores.jsonl.meta.json' marked complete"):
        build_rows([output], tmp_path / "rows.jsonl", RowSettings())


def test_bad_settings(score_file, tmp_path):
    with pytest.raises(InputError, match="unknown --format"):
        build_rows([score_file], tmp_path / "r.jsonl", RowSettings(format="pairs"))
    with pytest.raises(InputError, match="an ntuple row has one column per negative, so it needs a count"):
        build_rows([score_file], tmp_path / "r.jsonl", RowSettings(num_negatives=0))
    with pytest.raises(InputError, match="at least 1"):
        build_rows([score_file], tmp_path / "r.jsonl", RowSettings(top_k=0))


def test_num_negatives_all_keeps_every_lower_scored_passage(score_file, tmp_path):
    """--num_negatives all (0 in RowSettings), as in Embedding-Distillation: a listwise row holds every passage of its
    query, a triplet row set every lower-scored passage; 'auto' and '0' stay the format's own count."""
    from ragdistill.core.arguments import parse_num_negatives

    assert parse_num_negatives("all", 32, zero=32) == 0 and parse_num_negatives("auto", 32, zero=32) == 32
    assert parse_num_negatives("0", 4, zero=4) == 4 and parse_num_negatives("0", 8, zero=0) == 0
    assert parse_num_negatives("7", 4, zero=4) == 7
    with pytest.raises(InputError, match="a positive number, 'all' or 'auto'"):
        parse_num_negatives("-3", 4, zero=4)
    listwise, triplet = tmp_path / "listwise.jsonl", tmp_path / "triplet.jsonl"
    build_rows([score_file], listwise, RowSettings(format="listwise", top_k=2, num_negatives=0))
    build_rows([score_file], triplet, RowSettings(format="triplet", top_k=1, num_negatives=0))
    per_query = {}
    for line in score_file.read_text().splitlines():
        row = json.loads(line)
        per_query.setdefault(row["query"], set()).add(row["passage"])
    rows = [json.loads(line) for line in listwise.read_text().splitlines()]
    assert {row["query"]: len(row["documents"]) for row in rows} == {q: len(p) for q, p in per_query.items()}
    triplets = [json.loads(line) for line in triplet.read_text().splitlines()]
    assert len(triplets) == sum(len(p) - 1 for p in per_query.values())


def test_listwise_rows_carry_the_data_labels_of_the_scored_file(tmp_path):
    # relevance: 1 for a positive of the MTEB file stage 1 scored (named and digested in its metadata), else 0;
    # left out, with a warning, when that file has changed since; every file of a run must have it
    from ragdistill.core.hashing import file_digest

    source = tmp_path / "train.jsonl"
    source.write_text(dumps({"query": "A", "positive": ["A-p3", "A-p8"], "negative": [f"A-p{i}" for i in range(10)
                                                                                  if i not in (3, 8)]}) + "\n" +
                      dumps({"query": "B", "positive": ["B-p0"], "negative": ["B-p1", "B-p2"]}) + "\n")
    scores = finished_scores(tmp_path / "train.scores.jsonl", scored("A", SCORES) + scored("B", [1.0, 2.0, 0.0]))
    write_json(meta_path(scores), {"teacher": "tiny-teacher", "complete": True, "input": str(source),
                                   "input_digest": file_digest(source)})
    out = tmp_path / "listwise.jsonl"
    stats = build_rows([scores], out, RowSettings(format="listwise", top_k=3, num_negatives=10))
    a, b = read_rows(out)
    assert list(a) == ["query", "documents", "scores", "relevance"]
    assert a["relevance"] == [1.0 if d in ("A-p3", "A-p8") else 0.0 for d in a["documents"]]
    assert sum(a["relevance"]) == 2 and b["relevance"] == [0.0, 1.0, 0.0]  # B ranked p1, p0, p2
    assert stats.relevance and read_json(meta_path(out))["relevance"] is True

    source.write_text(source.read_text().replace("A-p8", "A-p9", 1))  # changed after stage 1 scored it
    stats = build_rows([scores], out, RowSettings(format="listwise", top_k=3, num_negatives=10))
    assert not stats.relevance and "relevance" not in read_rows(out)[0]
    assert read_json(meta_path(out))["relevance"] is False
