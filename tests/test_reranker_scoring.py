"""Stage 1 (teacher scores) on the transformers and bi-encoder backends with the tiny models: rows, metadata,
duplicates, truncation, determinism, bad input, bad models, non-finite scores, shards and their join."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json, read_jsonl
from ragdistill.core.resumable import is_complete, meta_path, parts_dir, require_complete
from ragdistill.reranker.scoring import read_pairs, score_file
from ragdistill.reranker.teachers import (
    GPU_MAX_BATCH_TOKENS,
    MIN_SHARED_PREFIX,
    PAD_TO_MULTIPLE_OF,
    TeacherArguments,
    common_prefix_length,
    describe_teacher,
    length_sorted_batches,
    load_teacher,
    resolve_max_batch_tokens,
    resolve_share_prefixes,
)
from tests.builders import stage_main as script_main

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "data/wikiqa/dev.jsonl.gz"


@pytest.fixture(scope="module")
def qwen_options(tiny_models):
    return TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="torch", teacher_dtype="float32",
                          teacher_max_length=512, batch_size=8)


@pytest.fixture(scope="module")
def qwen_teacher(qwen_options):
    return load_teacher(qwen_options)


def _score(data, output, options, teacher, **kwargs):
    """Stage 1 for one file; teacher None = nothing may be left to score."""

    def load():
        if teacher is None:
            pytest.fail("the teacher was loaded although every chunk was finished")
        return teacher

    return score_file(data, output, describe_teacher(options), load, **kwargs)


def stage_main(name: str):
    """main(argv) of a Reranker-Distillation stage script, run in this process."""
    return script_main("Reranker-Distillation", name)


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def _mteb(query, positive, negative):
    return json.dumps({"query": query, "positive": positive, "negative": negative})


def test_rows_metadata_and_duplicates(qwen_options, qwen_teacher, write_lines, tmp_path, tiny_models):
    data = write_lines("data.jsonl", [
        _mteb("What is the capital of France?", ["Paris is the capital of France."],
              ["The war ended in 1945.", "Paris is the capital of France."]),  # same pair twice on a line
        _mteb("Who wrote the novel?", ["The novel was written in 1851."], ["Sunlight is scattered."]),
        _mteb("What is the capital of France?", ["Paris is the capital and most populous city of France."],
              ["The war ended in 1945."]),  # the query again, one new passage, one seen pair
    ])
    output = tmp_path / "scores.jsonl"
    meta = _score(data, output, qwen_options, qwen_teacher, chunk_size=2)
    rows = _rows(output)
    # Distinct pairs, each query's passages together, in first-appearance order.
    assert [(r["query"][:6], r["passage"][:12]) for r in rows] == [
        ("What i", "Paris is the"), ("What i", "The war ende"), ("What i", "Paris is the"), ("Who wr", "The novel wa"),
        ("Who wr", "Sunlight is ")]
    assert len({(r["query"], r["passage"]) for r in rows}) == len(rows) == 5
    saved = read_json(meta_path(output))
    assert saved["complete"] is True and not parts_dir(output).exists()
    assert saved["duplicate_pairs_skipped"] == 2 and saved["num_pairs"] == 5 and saved["num_queries"] == 2
    assert saved["teacher"] == str(tiny_models["qwen3_reranker"]) and saved["backend"] == "torch"
    assert saved["instruction"].startswith("Given a web search query") and saved["max_length"] == 512
    assert saved["truncated_pairs"] == 0 and saved["tokens_per_pair"] > 50 and saved["pairs_per_second"] > 0
    assert saved["num_chunks"] == 3 and meta["dtype"] == "float32"

    # The score is logit(yes) - logit(no) of the plain causal LM on the model-card prompt.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragdistill.reranker.prompt import format_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["qwen3_reranker"])
    lm = AutoModelForCausalLM.from_pretrained(tiny_models["qwen3_reranker"], dtype=torch.float32)
    ids = tokenizer.encode(format_prompt(rows[3]["query"], rows[3]["passage"]), add_special_tokens=False)
    with torch.inference_mode():
        logits = lm(torch.tensor([ids])).logits[0, -1]
    expected = float(logits[tokenizer.convert_tokens_to_ids("yes")] - logits[tokenizer.convert_tokens_to_ids("no")])
    assert rows[3]["score"] == pytest.approx(expected, abs=1e-4)


def test_long_documents_are_cut_and_counted(qwen_options, qwen_teacher, tmp_path):
    short = replace(qwen_options, teacher_max_length=150)
    teacher = load_teacher(short)
    output = tmp_path / "scores.jsonl"
    _score(DEV, output, short, teacher, max_queries=3)
    meta = read_json(meta_path(output))
    prompts = teacher.prompts.encode(read_pairs(DEV, 3).pairs(range(meta["num_pairs"])))
    assert meta["max_length"] == 150 and max(prompts.num_tokens) == 150
    assert meta["truncated_pairs"] == sum(prompts.document_truncated) > 0
    assert meta["truncated_queries"] == 0


def test_same_command_same_bytes_and_max_queries(qwen_options, qwen_teacher, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _score(DEV, first, qwen_options, qwen_teacher, max_queries=3, chunk_size=7)
    _score(DEV, second, qwen_options, qwen_teacher, max_queries=3, chunk_size=7)
    assert first.read_bytes() == second.read_bytes()
    assert len({r["query"] for r in _rows(first)}) == 3
    # A finished output is not scored again; changed settings start over.
    meta = _score(DEV, first, qwen_options, None, max_queries=3, chunk_size=7)
    assert meta["complete"] is True
    _score(DEV, first, qwen_options, qwen_teacher, max_queries=2, chunk_size=7)
    assert len({r["query"] for r in _rows(first)}) == 2


def test_bad_rows_named_or_skipped(qwen_options, qwen_teacher, write_lines, tmp_path):
    data = write_lines("bad.jsonl", [
        _mteb("Who wrote the novel?", ["The novel was written in 1851."], ["Sunlight is scattered."]),
        json.dumps({"query": "Why is the sky blue?", "positive": ["Sunlight is scattered."]}),
        "{not json",
    ])
    with pytest.raises(InputError, match=r"bad\.jsonl:2: missing key: 'negative'"):
        _score(data, tmp_path / "x.jsonl", qwen_options, qwen_teacher)
    assert not (tmp_path / "x.jsonl").exists()
    meta = _score(data, tmp_path / "y.jsonl", qwen_options, qwen_teacher, skip_invalid=True)
    assert meta["skipped_invalid_rows"] == 2 and meta["num_pairs"] == 2
    assert "missing key" in meta["skipped_by_reason"] and _rows(tmp_path / "y.jsonl")[0]["query"] == "Who wrote the novel?"


def test_cli_error_is_one_line_exit_2(tmp_path, capsys):
    from ragdistill.core.cli import run_main

    missing = tmp_path / "no-such-model"
    argv = ["--teacher_model", str(missing), "--train_files", str(DEV), "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: stage_main("score")(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {missing}: teacher model path does not exist\n"


def test_models_that_are_not_rerankers(tmp_path, tiny_models):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a teacher model: no config.json"):
        describe_teacher(TeacherArguments(teacher_model=str(tmp_path / "empty")))
    # A plain encoder has no reranking head: CrossEncoder would add a random one. Refused.
    with pytest.raises(InputError, match="not a reranker: architecture BertModel"):
        describe_teacher(TeacherArguments(teacher_model=str(tiny_models["bert"])))
    # The bi-encoder backend wants a sentence-transformers model.
    with pytest.raises(InputError, match="not a sentence-transformers model"):
        load_teacher(TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="bi-encoder"))
    with pytest.raises(InputError, match="unknown --backend"):
        describe_teacher(TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="onnx"))


def test_non_finite_scores_are_never_written(tmp_path, tiny_models, qwen_options):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken-reranker"
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["qwen3_reranker"])
    lm = AutoModelForCausalLM.from_pretrained(tiny_models["qwen3_reranker"], dtype=torch.float32)
    with torch.no_grad():
        lm.lm_head.weight[tokenizer.convert_tokens_to_ids("yes")] = float("nan")
    lm.save_pretrained(broken)
    tokenizer.save_pretrained(broken)
    options = replace(qwen_options, teacher_model=str(broken))
    output = tmp_path / "scores.jsonl"
    with pytest.raises(InputError, match=r"non-finite teacher score \(nan\)"):
        _score(DEV, output, options, load_teacher(options), max_queries=2)
    assert not output.exists() and not list(parts_dir(output).glob("chunk-*"))


def test_bi_encoder_teacher(tmp_path, tiny_models):
    from sentence_transformers import SentenceTransformer

    options = TeacherArguments(teacher_model=str(tiny_models["qwen3_embedder"]), backend="bi-encoder",
                               teacher_dtype="float32",
                             bi_encoder_scale=20.0)
    output = tmp_path / "scores.jsonl"
    _score(DEV, output, options, load_teacher(options), max_queries=2)
    rows = _rows(output)
    meta = read_json(meta_path(output))
    assert meta["backend"] == "bi-encoder" and meta["bi_encoder_scale"] == 20.0 and meta["instruction"] is None
    model = SentenceTransformer(str(tiny_models["qwen3_embedder"]))
    query = model.encode_query([rows[0]["query"]], normalize_embeddings=True)
    passages = model.encode_document([r["passage"] for r in rows[:3]], normalize_embeddings=True)
    np.testing.assert_allclose([r["score"] for r in rows[:3]], 20.0 * (passages @ query[0]), atol=1e-4)


def test_cross_encoder_teacher_gives_raw_logits(tmp_path, tiny_models):
    from sentence_transformers import CrossEncoder

    teacher_dir = tmp_path / "bert-cross-encoder"
    CrossEncoder(str(tiny_models["bert"]), num_labels=1).save_pretrained(str(teacher_dir))
    options = TeacherArguments(teacher_model=str(teacher_dir), backend="torch", teacher_dtype="float32")
    output = tmp_path / "scores.jsonl"
    _score(DEV, output, options, load_teacher(options), max_queries=2)
    rows = _rows(output)
    import torch

    model = CrossEncoder(str(teacher_dir))
    raw = model.predict([(r["query"], r["passage"]) for r in rows], activation_fn=torch.nn.Identity())
    np.testing.assert_allclose([r["score"] for r in rows], raw, atol=1e-5)
    meta = read_json(meta_path(output))
    assert meta["teacher_kind"] == "cross-encoder" and meta["max_length"] == 512


# --- batching ---------------------------------------------------------------------------------------------------


def test_length_sorted_batches_by_rows_and_by_token_budget():
    lengths = [5, 30, 12, 30, 7, 100, 12]
    by_rows = length_sorted_batches(lengths, batch_size=3)
    assert by_rows == [[5, 1, 3], [2, 6, 4], [0]]  # longest first, stable among equals
    by_tokens = length_sorted_batches(lengths, batch_size=3, max_batch_tokens=60)
    # rows x longest row <= 60 (a row longer than the budget goes alone), batch_size no longer caps rows
    assert by_tokens == [[5], [1, 3], [2, 6, 4, 0]]
    assert sorted(i for batch in by_tokens for i in batch) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 60 for b in by_tokens if len(b) > 1)


def test_token_budget_is_on_for_gpus_only_unless_given():
    assert resolve_max_batch_tokens(0, "cpu") == 0
    assert resolve_max_batch_tokens(0, "cuda:0") == GPU_MAX_BATCH_TOKENS
    assert resolve_max_batch_tokens(512, "cpu") == 512


def test_padded_batches_are_a_multiple_of_8_wide(qwen_teacher):
    """The workaround for pytorch/pytorch#191937 (wrong SDPA output on CUDA at key lengths of 1 mod 32): every
    padded forward is a multiple of 8 tokens wide, and the padding changes no score."""
    pairs = read_pairs(DEV).pairs(range(24))
    widths = []
    decoder = qwen_teacher.decoder

    def recording(input_ids, **kwargs):
        widths.append(input_ids.shape[1])
        return decoder(input_ids=input_ids, **kwargs)

    qwen_teacher.decoder = recording
    sharing, qwen_teacher.share_prefixes = qwen_teacher.share_prefixes, False  # the padded-batch path
    try:
        batched = qwen_teacher.score(pairs)
    finally:
        qwen_teacher.decoder, qwen_teacher.share_prefixes = decoder, sharing
    assert len(widths) == 3 and all(w % PAD_TO_MULTIPLE_OF == 0 for w in widths)
    assert max(widths) >= max(batched.num_tokens)
    alone = [qwen_teacher.score([pair]).scores[0] for pair in pairs[:6]]
    np.testing.assert_allclose(batched.scores[:6], alone, atol=1e-4)


def test_common_prefix_length_leaves_every_sequence_a_token():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter one keeps its last token
    assert common_prefix_length([[7, 8]]) == 1


@pytest.mark.parametrize("max_batch_tokens", [0, 300])
def test_shared_prefixes_give_the_same_scores(qwen_teacher, max_batch_tokens):
    """Each query's shared prompt prefix is computed once and the passages of many queries run together, each row on
    its own query's cached prefix: the scores must equal the padded batches' (fp32). The batches mix queries of
    different prefix and passage lengths; a query with a single pair and a cut document are among the pairs. Also
    with a token budget per forward, as on GPUs."""
    plan = read_pairs(DEV, max_queries=7)
    pairs = plan.pairs(range(len(plan)))
    pairs.append(("a query with one passage only", pairs[0][1]))
    pairs.append((pairs[0][0], " ".join(p for _, p in pairs[:60])))  # cut to max_length
    assert qwen_teacher.share_prefixes == (not qwen_teacher.device.startswith("cuda"))  # on by default on CPUs
    calls, keys = [], []
    forward, decoder = qwen_teacher._forward, qwen_teacher.decoder

    def recording(rows, prefix=None, prefix_lengths=()):
        calls.append(([len(x) for x in rows], list(prefix_lengths)))
        return forward(rows, prefix, prefix_lengths)

    def recording_decoder(input_ids, past_key_values=None, **kwargs):
        keys.append(input_ids.shape[1] + (past_key_values.get_seq_length() if past_key_values else 0))
        return decoder(input_ids=input_ids, past_key_values=past_key_values, **kwargs)

    default = qwen_teacher.share_prefixes, qwen_teacher.max_batch_tokens
    try:
        qwen_teacher._forward, qwen_teacher.decoder = recording, recording_decoder
        qwen_teacher.share_prefixes, qwen_teacher.max_batch_tokens = True, max_batch_tokens
        shared = qwen_teacher.score(pairs)
        first_calls = list(calls)  # those of this call
        # two queries a call: the call-wide prefix reaches into the query text (not a multiple of 8 tokens long)
        chunks = [qwen_teacher.score(pairs[start:start + 8]).scores for start in (0, 8)]
        qwen_teacher.share_prefixes = False
        plain = qwen_teacher.score(pairs)
    finally:
        del qwen_teacher._forward  # the method again
        qwen_teacher.decoder = decoder
        qwen_teacher.share_prefixes, qwen_teacher.max_batch_tokens = default
    assert shared.num_tokens == plain.num_tokens and shared.truncated == plain.truncated and shared.truncated[-1]
    np.testing.assert_allclose(shared.scores, plain.scores, atol=1e-4)
    np.testing.assert_allclose(chunks[0] + chunks[1], plain.scores[:16], atol=1e-4)
    assert all(n % PAD_TO_MULTIPLE_OF == 0 for n in keys)  # the workaround for pytorch/pytorch#191937
    # One call-wide prefix, then the queries' own parts, then the passages: batches of rows from several queries,
    # with different prefix lengths and different passage lengths.
    assert len(first_calls[0][0]) == 1 and not first_calls[0][1]
    split, count = 1, 0
    while count < len(plan.queries):  # the queries that have several pairs: one part each
        count, split = count + len(first_calls[split][0]), split + 1
    passages = first_calls[split:]
    assert count == len(plan.queries) and sum(len(rows) for rows, _ in passages) == len(pairs) - 1
    assert any(len(set(lengths)) > 1 and len(set(rows)) > 1 for rows, lengths in passages)
    if max_batch_tokens:
        assert all(len(rows) * max(rows) <= max_batch_tokens for rows, _ in passages if len(rows) > 1)
    # every pair but each query's first took its prefix from the cache; the single pair went the plain way
    cached = shared.cached_tokens
    first = {}
    for i, (query, _) in enumerate(pairs):
        first.setdefault(query, i)
    assert all(cached[i] >= MIN_SHARED_PREFIX for i in range(len(pairs)) if first[pairs[i][0]] != i)
    assert cached[len(pairs) - 2] == 0 and cached[0] == 0


def test_bf16_scores_do_not_tie(tiny_models):
    """In bf16 the yes/no head is computed in fp32 from the last hidden state (as vLLM does): the scores do not
    fall on bf16's coarse grid, so distinct pairs keep distinct scores, where a bf16 logit difference (what
    sentence-transformers' LogitScore reads) ties."""
    import torch

    from ragdistill.reranker.teachers import padded_width

    plan = read_pairs(DEV, max_queries=6)
    pairs = plan.pairs(range(len(plan)))
    options = TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="torch",
                               teacher_dtype="bfloat16",
                             teacher_max_length=512, batch_size=16)
    teacher = load_teacher(options)
    fp32 = load_teacher(replace(options, teacher_dtype="float32")).score(pairs).scores
    assert len(set(fp32)) == len(pairs)
    for share_prefixes in (True, False):
        teacher.share_prefixes = share_prefixes
        scores = teacher.score(pairs).scores
        assert len(set(scores)) == len(pairs)
        np.testing.assert_allclose(scores, fp32, atol=0.2)  # bf16 rounding through 2 layers
    # The same model's bf16 logits, read at the last position: ties (so the check above can fail).
    ids = teacher.prompts.encode(pairs).input_ids
    rounded = []
    for start in range(0, len(ids), 16):
        rows = ids[start:start + 16]
        width = padded_width(rows)
        features = {"input_ids": torch.tensor([[teacher.pad_id] * (width - len(x)) + x for x in rows]),
                    "attention_mask": torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in rows]),
                    "logits_to_keep": 1}
        with torch.inference_mode():
            rounded += teacher.model(features)["scores"].float().view(-1).tolist()
    print(f"{len(pairs)} pairs: {len(set(rounded))} distinct bf16 logit differences")
    assert len(set(rounded)) < len(pairs)


def test_share_prefixes_flag(tiny_models, tmp_path, capsys):
    from ragdistill.core.cli import run_main

    assert resolve_share_prefixes("auto", "cpu") and not resolve_share_prefixes("auto", "cuda:0")
    assert resolve_share_prefixes("on", "cuda") and not resolve_share_prefixes("off", "cpu")
    argv = ["--teacher_model", str(tiny_models["qwen3_reranker"]), "--train_files", str(DEV), "--output_dir",
            str(tmp_path), "--backend", "torch", "--share_prefixes", "yes"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: stage_main("score")(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: <input>: --share_prefixes yes: expected one of auto, on, off\n"
    options = TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="torch",
                               teacher_dtype="float32")
    assert load_teacher(replace(options, share_prefixes="off")).share_prefixes is False


@pytest.mark.parametrize("kind", ["qwen3_reranker", "cross_encoder"])
def test_token_budget_batches_give_the_same_scores(kind, qwen_options, qwen_teacher, tiny_models, tmp_path):
    from sentence_transformers import CrossEncoder

    pairs = read_pairs(DEV).pairs(range(40))
    if kind == "qwen3_reranker":
        options, fixed = qwen_options, qwen_teacher
    else:
        teacher_dir = tmp_path / "bert-cross-encoder"
        CrossEncoder(str(tiny_models["bert"]), num_labels=1).save_pretrained(str(teacher_dir))
        options = TeacherArguments(teacher_model=str(teacher_dir), backend="torch", teacher_dtype="float32")
        fixed = load_teacher(options)
    budgeted = load_teacher(replace(options, max_batch_tokens=400))
    # on CPU the fixed teacher runs batches of batch_size rows; on a GPU its own default budget
    assert budgeted.max_batch_tokens == 400 and fixed.max_batch_tokens == resolve_max_batch_tokens(0, fixed.device)
    expected, got = fixed.score(pairs), budgeted.score(pairs)
    assert got.num_tokens == expected.num_tokens
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)


# --- shards -----------------------------------------------------------------------------------------------------


def test_shards_score_their_chunks_and_the_plain_run_joins_them(qwen_options, qwen_teacher, tmp_path):
    whole = tmp_path / "whole" / "dev.scores.jsonl"
    _score(DEV, whole, qwen_options, qwen_teacher, max_queries=7, chunk_size=8)
    # Two "machines": shards 0 and 1 on one, shard 2 on the other; each scores only chunks i % 3 == its id.
    output, other_machine = tmp_path / "a" / "dev.scores.jsonl", tmp_path / "b" / "dev.scores.jsonl"
    for shard_id, path in ((0, output), (1, output), (2, other_machine)):
        meta = _score(DEV, path, qwen_options, qwen_teacher, max_queries=7, chunk_size=8, num_shards=3,
                      shard_id=shard_id)
        assert not meta["complete"] and not path.exists()
    num_chunks = read_json(meta_path(whole))["num_chunks"]
    assert num_chunks >= 3
    assert sorted(p.name for p in parts_dir(other_machine).glob("chunk-*")) == \
           [f"chunk-{i:05d}.jsonl" for i in range(num_chunks) if i % 3 == 2]
    with pytest.raises(InputError, match="incomplete: stage 1 stopped after"):
        require_complete(output)
    # A shard run of another job (other --max_queries) into the same folder is refused.
    with pytest.raises(InputError, match="partial output from a different run"):
        _score(DEV, output, qwen_options, qwen_teacher, max_queries=6, chunk_size=8, num_shards=3, shard_id=2)

    # The folders merge with a plain copy (chunks and their stats); the same command without shard flags joins
    # them and scores nothing.
    for path in parts_dir(other_machine).glob("*-*"):
        (parts_dir(output) / path.name).write_bytes(path.read_bytes())
    joined = _score(DEV, output, qwen_options, None, max_queries=7, chunk_size=8)
    assert is_complete(output) and joined["num_pairs"] == read_json(meta_path(whole))["num_pairs"]
    assert output.read_bytes() == whole.read_bytes() and not parts_dir(output).exists()
    timings = ("seconds", "pairs_per_second")
    assert {k: v for k, v in read_json(meta_path(output)).items() if k not in timings} == \
           {k: v for k, v in read_json(meta_path(whole)).items() if k not in timings}


def test_shard_cli(tiny_models, tmp_path, capsys):
    from ragdistill.core.cli import run_main

    argv = ["--teacher_model", str(tiny_models["qwen3_reranker"]), "--train_files", str(DEV), "--output_dir",
            str(tmp_path), "--backend", "torch", "--teacher_dtype", "float32", "--max_queries", "3",
            "--chunk_size", "4"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: stage_main("score")([*argv, "--num_shards", "2", "--shard_id", "2"]))
    assert exit_info.value.code == 2
    assert "--shard_id must be in 0..1" in capsys.readouterr().err
    output = tmp_path / "dev.scores.jsonl"
    stage_main("score")([*argv, "--num_shards", "2", "--shard_id", "1"])
    assert not output.exists() and sorted(p.name for p in parts_dir(output).glob("chunk-*"))[0] == "chunk-00001.jsonl"
    stage_main("score")([*argv, "--num_shards", "2", "--shard_id", "0"])
    stage_main("score")(argv)
    assert is_complete(output) and len(read_jsonl(output)) == read_json(meta_path(output))["num_pairs"]


def test_the_score_stage_flags_describe_the_teacher(tiny_models):
    """load_teacher and describe_teacher take the score stage's own flags (TeacherArguments), as the embedding
    pipeline's do: what identifies the scores comes from them."""
    args = TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="torch", instruction="find dups",
                            teacher_max_length=128, teacher_dtype="bfloat16")
    settings = describe_teacher(args)
    assert (settings.model, settings.backend, settings.instruction, settings.max_length, settings.dtype) == \
           (str(tiny_models["qwen3_reranker"]), "torch", "find dups", 128, "bfloat16")
