"""Stage 1 of Embedding-Distillation on the sentence-transformers backend: unique texts, vectorised similarities,
row formats, truncation, invalid rows, shards, cached evaluation scores, determinism. Tiny real Qwen3 embedder."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest

from ragdistill.core.arguments import parse_num_negatives
from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json, read_jsonl
from ragdistill.core.resumable import is_complete, meta_path, parts_dir, require_complete
from ragdistill.embedding.scoring import (
    LazyTeacher,
    SoftLabelJob,
    cached_teacher_scores,
    kept_embeddings_path,
    teacher_scores_path,
)
from ragdistill.embedding.teachers import DEFAULT_TASK, TeacherArguments, load_teacher, resolve_prompts
from tests.conftest import REPO

MAX_LENGTH = 96


def _rows(path, count):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(count), handle)]


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """Two small MTEB files; the second repeats a row of the first, so texts repeat across files."""
    folder = tmp_path_factory.mktemp("data")
    wikiqa = _rows(REPO / "data/wikiqa/dev.jsonl.gz", 6)
    trecqa = _rows(REPO / "data/trecqa/dev.jsonl.gz", 3)
    first, second = folder / "first.jsonl", folder / "second.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in wikiqa))
    second.write_text("".join(json.dumps(r) + "\n" for r in [*trecqa, wikiqa[0]]))
    return [str(first), str(second)], wikiqa + trecqa


def _args(tiny_models, **overrides):
    values = dict(teacher_model=str(tiny_models["qwen3_embedder"]), backend="torch", teacher_dtype="float32",
                  teacher_max_length=MAX_LENGTH, chunk_size=32, batch_size=16)
    values.update(overrides)
    return TeacherArguments(**values)


@pytest.fixture(scope="module")
def teacher(tiny_models):
    """One loaded teacher for the module (loading is what the tests would otherwise repeat)."""
    args = _args(tiny_models)
    lazy = LazyTeacher(args, lambda: load_teacher(args))
    lazy.get()
    yield lazy
    lazy.close()


def _never_loaded(args):
    def fail():
        raise AssertionError("the teacher was loaded although nothing was left to embed")

    return LazyTeacher(args, fail)


def test_prompts_follow_the_model_unless_an_instruction_is_given(tiny_models):
    qwen, bert = str(tiny_models["qwen3_embedder"]), str(tiny_models["bert"])
    assert resolve_prompts(qwen, None) == (f"Instruct: {DEFAULT_TASK}\nQuery:", "")
    assert resolve_prompts(qwen, "Find the paper")[0] == "Instruct: Find the paper\nQuery:"
    assert resolve_prompts(qwen, "none") == ("", "")
    assert resolve_prompts(bert, None) == ("", "")  # defines no prompts: none invented
    assert resolve_prompts("/no/such/Qwen3-Embedding-8B", None)[0] == f"Instruct: {DEFAULT_TASK}\nQuery:"


def test_ntuple_rows_hold_the_hardest_negatives_and_the_teachers_cosines(tmp_path, data_files, teacher,
                                                                          tiny_models):
    from sentence_transformers import SentenceTransformer

    files, samples = data_files
    output = tmp_path / "rows.jsonl"
    encoded_before = teacher.loaded.texts_encoded
    meta = SoftLabelJob(files=files, output=str(output), teacher=teacher, num_negatives=3).run()

    # each unique text embedded once: the repeated row of the second file adds nothing
    unique_queries = {s["query"] for s in samples}
    unique_passages = {p for s in samples for p in s["positive"] + s["negative"]}
    assert meta["counts"]["unique_queries"] == len(unique_queries) == 9
    assert meta["counts"]["unique_passages"] == len(unique_passages)
    assert teacher.loaded.texts_encoded - encoded_before == len(unique_queries) + len(unique_passages)
    assert meta["complete"] and is_complete(output) and not parts_dir(output).exists()

    rows = read_jsonl(output)
    assert len(rows) == sum(len(s["positive"]) for s in samples) + len(samples[0]["positive"])
    assert list(rows[0]) == ["query", "positive", "negative_1", "negative_2", "negative_3", "label"]

    # labels: the cosine sentence-transformers itself gives (its own query prompt, same truncation)
    reference = SentenceTransformer(str(tiny_models["qwen3_embedder"]), device="cpu")
    reference.max_seq_length = MAX_LENGTH
    for row in rows[:4]:
        sample = next(s for s in samples if s["query"] == row["query"])
        query = reference.encode_query([row["query"]], convert_to_tensor=True)
        negatives = reference.encode_document(sample["negative"], convert_to_tensor=True)
        positive = reference.encode_document([row["positive"]], convert_to_tensor=True)
        neg_sims = reference.similarity(query, negatives)[0].numpy()
        expected_order = [sample["negative"][i] for i in np.argsort(-neg_sims, kind="stable")[:3]]
        assert [row[f"negative_{i}"] for i in (1, 2, 3)] == expected_order
        expected = [float(reference.similarity(query, positive)[0, 0]), *np.sort(neg_sims)[::-1][:3]]
        np.testing.assert_allclose(row["label"], expected, atol=2e-6)
        assert row["label"][1:] == sorted(row["label"][1:], reverse=True)


def test_triplet_and_all_negatives_formats(tmp_path, data_files, teacher):
    files, samples = data_files
    triplets = SoftLabelJob(files=files, output=str(tmp_path / "t.jsonl"), teacher=teacher, fmt="triplet").run()
    expected = sum(len(s["positive"]) * len(s["negative"]) for s in samples + [samples[0]])
    assert triplets["counts"]["rows"] == expected
    row = read_jsonl(tmp_path / "t.jsonl")[0]
    assert list(row) == ["query", "positive", "negative", "label"] and len(row["label"]) == 2

    every = SoftLabelJob(files=files, output=str(tmp_path / "a.jsonl"), teacher=teacher,
                         num_negatives=parse_num_negatives("all", 8, zero=0)).run()
    most = max(len(s["negative"]) for s in samples)
    assert every["counts"]["negatives_per_row"] == most
    all_rows = read_jsonl(tmp_path / "a.jsonl")
    assert {len(r["label"]) for r in all_rows} == {most + 1}
    # a query with fewer negatives repeats its own, hardest first, labels included
    short = min(samples, key=lambda s: len(s["negative"]))
    row = next(r for r in all_rows if r["query"] == short["query"])
    negatives = [row[f"negative_{i + 1}"] for i in range(most)]
    count = len(short["negative"])
    assert sorted(negatives[:count]) == sorted(short["negative"])
    assert negatives[count:] == (negatives[:count] * most)[:most - count]
    assert row["label"][1 + count:] == (row["label"][1:1 + count] * most)[:most - count]

    rows_of = {len(s["negative"]) < 5 for s in samples}
    assert rows_of == {True, False}  # the data has queries on both sides of 5
    padded = SoftLabelJob(files=files, output=str(tmp_path / "p.jsonl"), teacher=teacher, num_negatives=5).run()
    short_queries = sum(len(s["negative"]) < 5 for s in samples + [samples[0]])
    assert padded["counts"]["queries_padded"] == short_queries
    assert padded["counts"]["rows"] == sum(len(s["positive"]) for s in samples + [samples[0]])
    dropped = SoftLabelJob(files=files, output=str(tmp_path / "d.jsonl"), teacher=teacher, num_negatives=5,
                           pad_negatives=False).run()
    assert dropped["counts"]["queries_too_few_negatives"] == short_queries
    assert dropped["counts"]["rows"] == sum(len(s["positive"]) for s in samples + [samples[0]]
                                            if len(s["negative"]) >= 5)
    with pytest.raises(InputError, match="a positive number, 'all' or 'auto'"):
        parse_num_negatives("lots", 8, zero=0)


def test_truncation_is_counted_and_reported(tmp_path, write_lines, teacher, caplog):
    long_passage = "The city has a population of about two million people. " * 40
    lines = [json.dumps({"query": "How many people live in the city?", "positive": [long_passage, "Paris."],
                         "negative": ["The war ended in 1945.", long_passage.upper()]}),
             json.dumps({"query": "Why is the sky blue? " * 30, "positive": ["Sunlight is scattered."],
                         "negative": ["It reads the query and the passage together."]})]
    path = write_lines("long.jsonl", lines)
    with caplog.at_level(logging.INFO, logger="ragdistill"):
        meta = SoftLabelJob(files=[str(path)], output=str(tmp_path / "rows.jsonl"), teacher=teacher,
                            num_negatives=1).run()
    assert meta["truncated"]["queries"] == 1
    assert meta["truncated"]["passages"] == 2
    assert meta["truncated"]["longest_text_tokens"] > MAX_LENGTH
    assert read_json(meta_path(tmp_path / "rows.jsonl"))["truncated"]["passages"] == 2
    assert f"truncated to {MAX_LENGTH} tokens: 1 queries, 2 passages" in caplog.text


def test_invalid_rows_fail_with_file_and_line_or_are_skipped_and_counted(tmp_path, write_lines, teacher):
    good = json.dumps({"query": "What is the capital of France?", "positive": ["Paris."], "negative": ["Rome."]})
    path = write_lines("bad.jsonl", [good, '{"query": "q", "positive": ["p"]}', "{not json", good])
    with pytest.raises(InputError, match=r"bad\.jsonl:2: missing key"):
        SoftLabelJob(files=[str(path)], output=str(tmp_path / "rows.jsonl"), teacher=teacher, num_negatives=1).run()
    assert not (tmp_path / "rows.jsonl").exists()
    meta = SoftLabelJob(files=[str(path)], output=str(tmp_path / "rows.jsonl"), teacher=teacher, num_negatives=1,
                        skip_invalid=True).run()
    assert meta["counts"]["skipped_invalid"] == 2
    assert meta["counts"]["queries"] == 2 and meta["counts"]["unique_queries"] == 1
    limited = SoftLabelJob(files=[str(path)], output=str(tmp_path / "one.jsonl"), teacher=teacher, num_negatives=1,
                           skip_invalid=True, max_queries=1).run()
    assert limited["counts"]["queries"] == 1


def test_same_inputs_give_byte_identical_rows(tmp_path, data_files, tiny_models):
    files, _ = data_files
    outputs = []
    for name in ("first", "second"):
        args = _args(tiny_models)
        lazy = LazyTeacher(args, lambda args=args: load_teacher(args))  # a fresh model load each time
        SoftLabelJob(files=files[:1], output=str(tmp_path / f"{name}.jsonl.gz"), teacher=lazy, num_negatives=2).run()
        lazy.close()
        outputs.append((tmp_path / f"{name}.jsonl.gz").read_bytes())
    assert outputs[0] == outputs[1]


def test_shards_embed_their_chunks_and_the_plain_run_joins_them_into_the_same_bytes(tmp_path, data_files, teacher,
                                                                                    tiny_models):
    files, _ = data_files
    whole = tmp_path / "whole.jsonl"
    SoftLabelJob(files=files, output=str(whole), teacher=teacher, num_negatives=2).run()
    # Two "machines": shards 0 and 2 on one, shard 1 on the other; each computes only chunks i % 3 == its id.
    output, other_machine = tmp_path / "a" / "rows.jsonl", tmp_path / "b" / "rows.jsonl"
    output.parent.mkdir()
    other_machine.parent.mkdir()
    for shard_id, path in ((0, output), (2, output), (1, other_machine)):
        meta = SoftLabelJob(files=files, output=str(path), teacher=teacher, num_negatives=2, num_shards=3,
                            shard_id=shard_id).run()
        assert not meta["complete"] and not path.exists()
    num_chunks = meta["num_chunks"]
    assert num_chunks >= 3
    on_a = sorted(p.name for p in parts_dir(output).glob("chunk-*"))
    on_b = sorted(p.name for p in parts_dir(other_machine).glob("chunk-*"))
    assert on_a == [f"chunk-{i:05d}.npy" for i in range(num_chunks) if i % 3 != 1]
    assert on_b == [f"chunk-{i:05d}.npy" for i in range(num_chunks) if i % 3 == 1]
    with pytest.raises(InputError, match="incomplete"):
        require_complete(output)

    # a shard run of another job (other inputs) into the same folder is refused
    with pytest.raises(InputError, match="partial output from a different run"):
        SoftLabelJob(files=files[:1], output=str(output), teacher=teacher, num_shards=3, shard_id=1).run()

    # the folders merge with a plain copy; the same command without shard flags joins them, embedding nothing
    for chunk in parts_dir(other_machine).glob("chunk-*"):
        (parts_dir(output) / chunk.name).write_bytes(chunk.read_bytes())
    joined = SoftLabelJob(files=files, output=str(output), teacher=_never_loaded(_args(tiny_models)),
                          num_negatives=2).run()
    assert joined["complete"] and joined["embedding"]["texts_embedded_this_run"] == 0
    assert output.read_bytes() == whole.read_bytes() and not parts_dir(output).exists()
    whole_meta = read_json(meta_path(whole))
    assert joined["fingerprint"] == whole_meta["fingerprint"] and joined["counts"] == whole_meta["counts"]


def test_complete_output_is_not_redone_and_incomplete_output_is_refused(tmp_path, data_files, teacher, tiny_models):
    files, _ = data_files
    output = tmp_path / "rows.jsonl"
    SoftLabelJob(files=files, output=str(output), teacher=teacher, num_negatives=2).run()
    again = SoftLabelJob(files=files, output=str(output), teacher=_never_loaded(_args(tiny_models)),
                         num_negatives=2).run()
    assert again["complete"]
    # other settings: rebuilt (from the same teacher, no stale metadata left saying complete meanwhile)
    changed = SoftLabelJob(files=files, output=str(output), teacher=teacher, num_negatives=1).run()
    assert changed["fingerprint"] != again["fingerprint"]
    assert {len(row["label"]) for row in read_jsonl(output)} == {2}

    meta_path(output).unlink()  # as if the run died between renaming the rows and writing the metadata
    with pytest.raises(InputError, match="incomplete.*Re-run"):
        require_complete(output)
    from ragdistill.embedding.training import load_training_rows

    with pytest.raises(InputError, match="incomplete"):
        load_training_rows(output)


def test_other_row_settings_reuse_the_kept_teacher_embeddings(tmp_path, data_files, teacher, tiny_models):
    files, _ = data_files
    output, fresh = tmp_path / "rows.jsonl", tmp_path / "fresh.jsonl"
    SoftLabelJob(files=files, output=str(output), teacher=teacher, num_negatives=2, keep_embeddings=True).run()
    kept = kept_embeddings_path(output)
    assert is_complete(kept) and not parts_dir(output).exists()
    # other row settings: no teacher, nothing embedded, the same bytes as a run that embeds afresh
    changed = SoftLabelJob(files=files, output=str(output), teacher=_never_loaded(_args(tiny_models)),
                           num_negatives=1, false_negative_margin=0.9, keep_embeddings=True).run()
    assert changed["complete"] and changed["embedding"]["texts_embedded_this_run"] == 0
    assert not parts_dir(output).exists()
    SoftLabelJob(files=files, output=str(fresh), teacher=teacher, num_negatives=1, false_negative_margin=0.9).run()
    assert output.read_bytes() == fresh.read_bytes() and not kept_embeddings_path(fresh).exists()
    # other texts: embedded, and the kept embeddings replaced by theirs
    fewer = SoftLabelJob(files=files[:1], output=str(output), teacher=teacher, num_negatives=1,
                         keep_embeddings=True).run()
    counts = fewer["counts"]
    assert fewer["embedding"]["texts_embedded_this_run"] == counts["unique_queries"] + counts["unique_passages"]
    assert read_json(meta_path(kept))["texts"] == fewer["embedding"]["texts_embedded_this_run"]


def test_evaluation_scores_are_cached_per_teacher_and_file(tmp_path, data_files, teacher, tiny_models):
    files, samples = data_files
    first = cached_teacher_scores(files[:1], teacher, tmp_path / "cache")
    rows, meta = first[files[0]]
    assert [r["query"] for r in rows] == [s["query"] for s in samples[:6]]
    assert [len(r["positive_scores"]) + len(r["negative_scores"]) for r in rows] == \
           [len(s["positive"]) + len(s["negative"]) for s in samples[:6]]
    assert meta["embedding"]["texts_per_second"] > 0

    # second time: read from the cache, no teacher
    again = cached_teacher_scores(files[:1], _never_loaded(_args(tiny_models)), tmp_path / "cache")
    assert again[files[0]][0] == rows
    # another teacher setting is another cache entry
    other = _args(tiny_models, instruction="Find the answer")
    assert teacher_scores_path(tmp_path / "cache", files[0], LazyTeacher(other, None).identity) != \
           teacher_scores_path(tmp_path / "cache", files[0], teacher.identity)


def test_torch_teacher_refuses_a_max_length_beyond_the_models_positions(tiny_models):
    from ragdistill.embedding.teachers import load_teacher

    positions = json.loads((tiny_models["qwen3_embedder"] / "config.json").read_text())["max_position_embeddings"]
    with pytest.raises(InputError, match=rf"--teacher_max_length {positions + 1} exceeds the model's {positions} "):
        load_teacher(_args(tiny_models, backend="torch", teacher_max_length=positions + 1))
    assert load_teacher(_args(tiny_models, backend="torch", teacher_max_length=positions)).max_length == positions
