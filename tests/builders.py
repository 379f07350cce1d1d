"""Tiny real models, built offline in seconds, for tests, benchmarks and smoke runs.

- a tiny Qwen3ForCausalLM reranker/embedder: byte-level BPE tokenizer trained with `tokenizers`, Qwen's special
  tokens, "yes" and "no" as single tokens, the Qwen3 chat template, head_dim 64 (vLLM's CPU attention needs >= 64);
- a tiny BERT (WordPiece trained the same way), usable as a CrossEncoder student and a SentenceTransformer student.

Weights are random (seeded): the models are real architectures running through the real code paths, not fakes.
`build_qwen3` also takes a realistic shape for benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# Qwen3's chat template, cut to what text models use: roles, and the empty think block when thinking is off.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

_BASE_CORPUS = """
Judge whether the Document meets the requirements based on the Query and the Instruct provided.
Note that the answer can only be "yes" or "no". yes no yes no yes no
Instruct: Given a web search query, retrieve relevant passages that answer the query
Query: Document: system user assistant
How many people live in the city? The city has a population of about two million people.
What is the capital of France? Paris is the capital and most populous city of France.
Who wrote the novel? The novel was written in 1851 by an American author.
When did the war end? The war ended in 1945 after six years of fighting.
Why is the sky blue? Sunlight is scattered by the molecules of the atmosphere.
What does a cross encoder do? It reads the query and the passage together and outputs a relevance score.
An embedding model maps each text to a vector; similar texts get nearby vectors.
""".strip()


def stage_main(folder: str, name: str):
    """main(argv) of a stage script (e.g. stage_main("Reranker-Distillation", "train")), loaded to run in this
    process: the script as a user runs it, without a subprocess."""
    import runpy

    script = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    return runpy.run_path(str(script), run_name=f"{folder.split('-')[0].lower()}_{name}")["main"]


def repo_env(**extra: str) -> dict[str, str]:
    """The environment for running the project's scripts in a subprocess: this repository first on PYTHONPATH
    (what is already there stays: a site folder of extra packages, say), offline, plus `extra`."""
    repo = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", **extra}


def _corpus(extra_texts: list[str] | None) -> list[str]:
    lines = _BASE_CORPUS.splitlines() * 20
    return lines + list(extra_texts or [])


def _train_bpe(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    for word in ("yes", "no"):
        if len(tokenizer.encode(word).ids) != 1:
            tokenizer.add_tokens([word])
    return tokenizer


def build_qwen3(output_dir: str | os.PathLike, hidden_size: int = 128, num_layers: int = 2, num_heads: int = 2,
                num_kv_heads: int = 1, intermediate_size: int = 256, vocab_size: int = 2000,
                max_position_embeddings: int = 2048, seed: int = 0, extra_texts: list[str] | None = None,
                embedder: bool = False, head_dim: int = 64) -> Path:
    """Save a random Qwen3ForCausalLM with a trained BPE tokenizer (head_dim 64: the least vLLM's CPU backend runs).

    embedder=True adds the sentence-transformers files of Qwen3-Embedding (last-token pooling, L2 normalisation,
    an <|endoftext|> appended to every text, left padding, the query prompt), so both sentence-transformers and
    vLLM's pooling runner load it as an embedding model.
    """
    import torch
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    raw = _train_bpe(_corpus(extra_texts), vocab_size)
    if embedder:
        eos_id = raw.token_to_id("<|endoftext|>")
        raw.post_processor = processors.TemplateProcessing(
            single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1",
            special_tokens=[("<|endoftext|>", eos_id)],
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        padding_side="left" if embedder else "right", model_max_length=max_position_embeddings,
    )
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    tokenizer.save_pretrained(output_dir)

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads, head_dim=head_dim,
        intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, dtype="float32",
    )
    model = Qwen3ForCausalLM(config)
    # Random init is tiny (std 0.02); scale the output layer so yes/no logits differ visibly between inputs.
    with torch.no_grad():
        model.lm_head.weight.mul_(25.0)
    model.save_pretrained(output_dir)
    if embedder:
        _write_sentence_transformers_files(output_dir, hidden_size)
    return output_dir


def _write_sentence_transformers_files(output_dir: Path, hidden_size: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (output_dir / "modules.json").write_text(json.dumps(modules, indent=2))
    (output_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    (output_dir / "1_Pooling").mkdir(exist_ok=True)
    (output_dir / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden_size, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": True, "include_prompt": True,
    }, indent=2))
    (output_dir / "2_Normalize").mkdir(exist_ok=True)
    (output_dir / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query"
                             "\nQuery:", "document": ""},
        "default_prompt_name": None, "similarity_fn_name": "cosine",
    }, indent=2))


def build_bert(output_dir: str | os.PathLike, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2,
               intermediate_size: int = 128, vocab_size: int = 1500, seed: int = 0,
               extra_texts: list[str] | None = None) -> Path:
    """Save a random BertModel with a trained WordPiece tokenizer (plain HF folder: CrossEncoder and
    SentenceTransformer both load it, adding a classifier head or mean pooling)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.decoder = decoders.WordPiece()
    raw.train_from_iterator(_corpus(extra_texts),
                            trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    cls_id, sep_id = raw.token_to_id("[CLS]"), raw.token_to_id("[SEP]")
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = BertTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    tokenizer.save_pretrained(output_dir)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=intermediate_size, max_position_embeddings=512)
    BertModel(config).save_pretrained(output_dir)
    return output_dir


def tiny_models(cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Build (once) and return the tiny models: 'qwen3_reranker', 'qwen3_embedder', 'bert'."""
    cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "ragdistill-tiny-models-v1")
    paths = {
        "qwen3_reranker": cache_dir / "qwen3-reranker",
        "qwen3_embedder": cache_dir / "qwen3-embedder",
        "bert": cache_dir / "bert",
    }
    builders = {
        "qwen3_reranker": lambda p: build_qwen3(p),
        "qwen3_embedder": lambda p: build_qwen3(p, embedder=True, seed=1),
        "bert": lambda p: build_bert(p),
    }
    for name, path in paths.items():
        if not (path / "config.json").exists():
            tmp = Path(tempfile.mkdtemp(dir=cache_dir.parent if cache_dir.parent.exists() else None))
            builders[name](tmp)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Atomic: a half-built model is never picked up; if another process finished first, keep its copy.
            with contextlib.suppress(OSError):
                os.replace(tmp, path)
    return paths
