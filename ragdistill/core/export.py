"""Serve a trained student: export it, quantise it to int8, and measure every variant the way it would be deployed.

Variants (VARIANTS), written beside the checkpoint in sentence-transformers' layout (onnx/, openvino/):
- torch-fp32, torch-bf16: the checkpoint itself, sentence-transformers on PyTorch.
- onnx-fp32: the graph (torch.onnx.export, `onnx/model.onnx`) optimised by ONNX Runtime's transformer optimiser
  (attention, LayerNorm and GELU fusions, exact GELU; optimum's level O2) -> `onnx/model_O2.onnx`.
- onnx-int8: ONNX Runtime's dynamic quantisation of the optimised graph: int8 weights per output channel,
  activations quantised per batch at run time, as optimum's `avx512_vnni` / `avx512` / `avx2` / `arm64` presets
  (chosen from the CPU) -> `onnx/model_qint8_<preset>.onnx`.
- openvino-int8: OpenVINO reads the exported graph; NNCF quantises weights and activations statically, the
  activation ranges calibrated on training texts (embedder: queries and passages; reranker: (query, passage) pairs)
  -> `openvino/openvino_model_qint8_quantized.xml` + `.bin`.

Why not sentence-transformers' own `backend="onnx"` / `"openvino"` and its export_* helpers: they load through
optimum-onnx and optimum-intel, whose latest releases (0.1.0, 2.2.0) require transformers < 4.58 and < 5.6 and do not
import with transformers 5.19. The conversions they wrap are called here directly (torch.onnx.export,
onnxruntime.transformers.optimizer, onnxruntime.quantization.quantize_dynamic, openvino.convert_model,
nncf.quantize), and an exported graph runs inside the sentence-transformers model in place of its PyTorch
transformer (`use_exported`): tokenisation, pooling, normalisation, `encode`, `predict` and the evaluators stay
sentence-transformers' own, so every variant is measured by the same code as the torch student.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ragdistill.core.errors import InputError
from ragdistill.core.mteb import RerankingSample
from ragdistill.retrieval.evaluation import format_number

logger = logging.getLogger(__name__)

KINDS = ("embedder", "reranker")
VARIANTS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "openvino-int8")
BACKENDS = ("torch", "onnx", "openvino")
OUTPUT_NAMES = {"embedder": "last_hidden_state", "reranker": "logits"}  # what sentence-transformers reads
RAW_ONNX = "onnx/model.onnx"
OPTIMIZED_ONNX = "onnx/model_O2.onnx"
OPENVINO_INT8 = "openvino/openvino_model_qint8_quantized.xml"
# What each backend needs beyond the core requirements (requirements-export.txt installs them).
REQUIRED_MODULES = {"torch": (), "onnx": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino", "nncf")}
INSTALL_HINT = "pip install -r requirements-export.txt (bash scripts/setup.sh installs it)"


@dataclass
class ExportArguments:
    """What to build and how to measure it: shared by both modules' export stages (each sets its own default paths)."""

    model: str = field(default="", metadata={"help": "The trained student (train.py's output folder)."})
    test_file: str = field(default="", metadata={
        "help": "MTEB reranking test file {query, positive, negative}: quality and speed are measured on it."})
    calibration_files: str = field(default="", metadata={
        "help": "Training file(s), comma-separated: their queries and passages calibrate the OpenVINO int8 model."})
    output_dir: str = field(default="", metadata={"help": "Where export_results.json / .md / .png go."})
    variants: str = field(default=",".join(VARIANTS), metadata={
        "help": f"Comma-separated variants to build and measure, out of {', '.join(VARIANTS)}."})
    student_batch_size: int = field(default=32, metadata={"help": "Batch size of the quality and throughput runs."})
    speed_items: int = field(default=512, metadata={
        "help": "Test items (texts or pairs) timed per throughput pass (median of --repeats passes)."})
    latency_items: int = field(default=200, metadata={
        "help": "Single requests (a query, or a (query, passage) pair) timed at batch 1 for p50 / p95 latency."})
    repeats: int = field(default=3, metadata={"help": "Timed throughput passes per variant (the median counts)."})
    calibration_items: int = field(default=300, metadata={
        "help": "Training inputs that calibrate the OpenVINO int8 model's activation ranges."})
    max_queries: int = field(default=0, metadata={"help": "Measure on the first N test queries only (0 = all)."})
    max_seq_length: int = field(default=0, metadata={
        "help": "Student tokens per text or pair (0 = the model's own setting); use evaluation's value."})

    def __post_init__(self):
        if not (self.model and self.test_file and self.output_dir):
            raise InputError(None, "--model, --test_file and --output_dir are required")
        self.variant_list = parse_variants(self.variants)
        if min(self.student_batch_size, self.speed_items, self.latency_items, self.repeats) < 1:
            raise InputError(None, "--student_batch_size, --speed_items, --latency_items and --repeats must be positive")
        if self.calibration_items < 1 and "openvino-int8" in self.variant_list:
            raise InputError(None, "--calibration_items must be positive for the openvino-int8 variant")


def read_calibration_samples(paths: Sequence[str], count: int) -> list[RerankingSample]:
    """Enough training samples (file order) for `count` calibration inputs (two per sample)."""
    from ragdistill.core.mteb import iter_samples

    samples: list[RerankingSample] = []
    for path in paths:
        for sample in iter_samples(path):
            if 2 * len(samples) >= count:
                return samples
            samples.append(sample)
    return samples


def backend_of(variant: str) -> str:
    return variant.split("-", 1)[0]


@functools.cache
def int8_preset() -> str:
    """optimum's name for this CPU's int8 kernels: avx512_vnni, avx512, avx2 or arm64."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = set(Path("/proc/cpuinfo").read_text(encoding="utf-8").split())
    except OSError:
        flags = set()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def variant_file(variant: str) -> str | None:
    """The exported file a variant runs from, relative to the model folder (None for the torch variants)."""
    return {"onnx-fp32": OPTIMIZED_ONNX, "onnx-int8": f"onnx/model_qint8_{int8_preset()}.onnx",
            "openvino-int8": OPENVINO_INT8}.get(variant)


def parse_variants(value: str) -> list[str]:
    variants = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise InputError(None, f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose from "
                               f"{', '.join(VARIANTS)}")
    return variants


def backend_problem(backend: str) -> str | None:
    """Why `backend` cannot run here (a missing package), or None."""
    missing = []
    for module in REQUIRED_MODULES[backend]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        return f"{', '.join(missing)} not installed ({INSTALL_HINT})"
    return None


def short_error(error: BaseException) -> str:
    """One line for a table note: the exception's type and the first line of its message."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0][:300]}" if message else type(error).__name__


# ----------------------------------------------------------------------------------------------------------------
# Models: the torch student, and an exported graph inside it
# ----------------------------------------------------------------------------------------------------------------
def load_torch_model(kind: str, path: str | Path, dtype: str = "float32", max_length: int = 0, device=None,
                     attn_implementation: str | None = None):
    """The student on PyTorch, loaded as its pipeline loads it: a SentenceTransformer (embedder) or a one-logit
    CrossEncoder (reranker); `attn_implementation` switches its attention (the ONNX trace needs "eager")."""
    from ragdistill.core.hardware import default_device, torch_dtype

    device = device or default_device()
    if kind == "embedder":
        from ragdistill.embedding.training import load_student

        model = load_student(str(path), max_length or None, device, torch_dtype(dtype))
    else:
        from ragdistill.reranker.training import load_student

        model = load_student(str(path), max_length, torch_dtype(dtype), device)
    if attn_implementation:
        model[0].model.set_attn_implementation(attn_implementation)
    return model


class ExportedTransformer(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' Transformer module: the same call, the
    same output key (last_hidden_state or logits), computed by ONNX Runtime or OpenVINO on the CPU."""

    def __init__(self, path: str | Path, backend: str, config, output_name: str, threads: int = 0):
        super().__init__()
        self.config = config
        self.device = torch.device("cpu")
        self.backend = backend
        self.path = Path(path)
        if backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.input_names = [node.name for node in session.get_inputs()]
            self._run = lambda feeds: session.run([output_name], feeds)[0]
        elif backend == "openvino":
            import openvino as ov

            properties = {"INFERENCE_NUM_THREADS": threads} if threads else {}
            compiled = ov.Core().compile_model(str(path), "CPU", properties)
            self.input_names = [port.get_any_name() for port in compiled.inputs]
            request = compiled.create_infer_request()
            output = compiled.output(0)
            self._run = lambda feeds: np.array(request.infer(feeds)[output])  # a copy: the request reuses its buffer
        else:
            raise ValueError(f"backend must be 'onnx' or 'openvino', got {backend!r}")
        self.output_name = output_name

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feeds = {}
        for name in self.input_names:
            value = given.get(name)
            if value is None:  # e.g. token_type_ids the tokenizer did not return: BERT's default, all zeros
                value = torch.zeros_like(input_ids)
            feeds[name] = value.detach().cpu().numpy().astype(np.int64)
        return {self.output_name: torch.from_numpy(np.asarray(self._run(feeds), dtype=np.float32))}


def use_exported(model, kind: str, path: str | Path, backend: str, threads: int = 0):
    """Run `model` (a SentenceTransformer or CrossEncoder on the CPU) on the exported graph at `path` instead of
    PyTorch; the rest of the model (tokenizer, pooling, normalisation, activation) stays as it is."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"no exported {backend} model here: run the export stage (export.sh) first")
    problem = backend_problem(backend)
    if problem:
        raise InputError(path, f"the {backend} backend cannot run: {problem}")
    module = model[0]
    module.model = ExportedTransformer(path, backend, module.model.config, OUTPUT_NAMES[kind], threads)
    return model


def load_variant(kind: str, path: str | Path, variant: str, max_length: int = 0):
    """The student as one variant runs it: torch in fp32 / bf16, or the exported graph of an ONNX / OpenVINO one."""
    if variant not in VARIANTS:
        raise InputError(None, f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    backend = backend_of(variant)
    if backend == "torch":
        return load_torch_model(kind, path, "bfloat16" if variant.endswith("bf16") else "float32", max_length)
    model = load_torch_model(kind, path, "float32", max_length, device="cpu")
    return use_exported(model, kind, Path(path) / variant_file(variant), backend)


def variant_size_bytes(path: str | Path, variant: str) -> int | None:
    """Bytes of the weights a variant loads (torch-bf16: half of the fp32 checkpoint, as it lies in memory)."""
    path = Path(path)
    if backend_of(variant) == "torch":
        files = list(path.glob("*.safetensors")) or list(path.glob("pytorch_model*.bin"))
        size = sum(f.stat().st_size for f in files)
        return (size // 2 if variant.endswith("bf16") else size) or None
    target = path / variant_file(variant)
    files = [target, target.with_suffix(".bin")] if backend_of(variant) == "openvino" else [target]
    files += list(target.parent.glob(target.name + "_data"))  # external weights of graphs over 2 GB
    return sum(f.stat().st_size for f in files if f.exists()) or None


# ----------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------
def _example_inputs(model, kind: str) -> dict:
    """A padded batch of two, so the traced graph keeps the attention mask (an all-ones mask may be dropped)."""
    texts = ["what is the capital of france", "paris"]
    if kind == "embedder":
        features = model.tokenizer(texts, padding=True, return_tensors="pt")
    else:
        features = model.tokenizer(texts, ["the capital of france is paris, its largest city", "a city"],
                                   padding=True, return_tensors="pt")
    return {name: features[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in features}


def export_onnx(kind: str, model_path: str | Path, output: str | Path, opset: int = 17) -> Path:
    """The student's transformer as an ONNX graph (fp32, dynamic batch and sequence length)."""
    model = load_torch_model(kind, model_path, "float32", device="cpu", attn_implementation="eager")
    hf_model = model[0].model.eval()
    inputs = _example_inputs(model, kind)
    output_name = OUTPUT_NAMES[kind]

    class SingleOutput(torch.nn.Module):  # the one output sentence-transformers reads, not the pooler's too
        def __init__(self):
            super().__init__()
            self.inner = hf_model

        def forward(self, *args):
            return self.inner(**dict(zip(inputs, args)), return_dict=True)[output_name]

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[output_name] = {0: "batch", 1: "sequence"} if kind == "embedder" else {0: "batch"}
    with torch.no_grad(), warnings_quiet():
        torch.onnx.export(SingleOutput(), tuple(inputs.values()), str(output), input_names=list(inputs),
                          output_names=[output_name], dynamic_axes=axes, opset_version=opset, dynamo=False)
    return output


@contextlib.contextmanager
def warnings_quiet():
    """The tracer's warnings about Python branches on shapes: the example batch is padded, so they are expected."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def optimize_onnx(source: str | Path, output: str | Path, config) -> Path:
    """ONNX Runtime's transformer fusions on a BERT-like graph (opt_level 2, exact GELU: optimum's O2)."""
    from onnxruntime.transformers.optimizer import optimize_model

    num_heads = getattr(config, "num_attention_heads", 0) or 0
    hidden_size = getattr(config, "hidden_size", 0) or 0
    optimized = optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=2)
    optimized.save_model_to_file(str(output))
    return Path(output)


def quantize_onnx_dynamic(source: str | Path, output: str | Path) -> Path:
    """int8 weights per channel, activations quantised at run time; the reduced range on CPUs without VNNI, where
    the int8 kernels can saturate (as optimum's presets do). The fused graph first gets its shapes inferred
    (ONNX Runtime's quantisation pre-processing), which the quantiser needs for the fused operators."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    output = Path(output)
    with tempfile.TemporaryDirectory(dir=output.parent) as work:
        shaped = Path(work) / "shaped.onnx"
        quant_pre_process(str(source), str(shaped), skip_optimization=True)
        quantize_dynamic(str(shaped), str(output), per_channel=True, weight_type=QuantType.QInt8,
                         reduce_range=int8_preset() in ("avx512", "avx2"))
    return output


def calibration_inputs(model, kind: str, samples: Sequence[RerankingSample], count: int) -> list[dict]:
    """Up to `count` tokenised inputs (batch of one, unpadded) from training data: per query, the query and its first
    positive (embedder), or the (query, positive) and (query, first negative) pairs (reranker)."""
    items: list = []
    for sample in samples:
        if kind == "embedder":
            items += [sample.query, sample.positive[0]]
        else:
            items += [(sample.query, sample.positive[0]), (sample.query, sample.negative[0])]
        if len(items) >= count:
            break
    result = []
    for item in items[:count]:
        texts = [item] if kind == "embedder" else ([item[0]], [item[1]])
        args = (texts,) if kind == "embedder" else texts
        features = model.tokenizer(*args, truncation=True, max_length=model.max_seq_length, return_tensors="np")
        result.append({name: np.asarray(value, dtype=np.int64) for name, value in features.items()
                       if name in ("input_ids", "attention_mask", "token_type_ids")})
    return result


def quantize_openvino_static(source_onnx: str | Path, output_xml: str | Path, calibration: list[dict]) -> Path:
    """NNCF post-training quantisation of the OpenVINO model read from the ONNX graph: weights and activations in
    int8, activation ranges from the calibration inputs (transformer preset: attention scores and softmax kept in
    floating point)."""
    import nncf
    import openvino as ov

    if not calibration:
        raise InputError(None, "no calibration inputs for the OpenVINO int8 model: give a training file")
    ov_model = ov.convert_model(str(source_onnx))
    names = [port.get_any_name() for port in ov_model.inputs]
    dataset = nncf.Dataset([{name: item[name] for name in names} for item in calibration])
    quantized = nncf.quantize(ov_model, dataset, model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration))
    output_xml = Path(output_xml)
    output_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(output_xml), compress_to_fp16=False)
    return output_xml


def export_variants(kind: str, model_path: str | Path, variants: Sequence[str],
                    calibration_samples: Sequence[RerankingSample] = (), calibration_count: int = 300
                    ) -> dict[str, str]:
    """Write the exported files the variants need into the model folder (always anew: a retrained checkpoint must
    not keep stale graphs). Returns {variant: why it could not be exported} for those that failed."""
    model_path = Path(model_path)
    problems: dict[str, str] = {}
    wanted = [v for v in variants if backend_of(v) != "torch"]
    for variant in wanted:
        problem = backend_problem(backend_of(variant))
        if problem:
            problems[variant] = problem
    wanted = [v for v in wanted if v not in problems]
    if not wanted:
        return problems
    raw = model_path / RAW_ONNX
    try:
        started = time.perf_counter()
        export_onnx(kind, model_path, raw)
        logger.info("exported %s in %.1f s", raw, time.perf_counter() - started)
    except Exception as error:  # a model the exporter cannot trace: every exported variant is out, said so
        return {**problems, **{v: f"ONNX export failed: {short_error(error)}" for v in wanted}}

    def step(variant: str, build: Callable[[], Path]) -> None:
        started = time.perf_counter()
        try:
            path = build()
            logger.info("%s: wrote %s in %.1f s", variant, path, time.perf_counter() - started)
        except Exception as error:  # one backend failing must not hide the others' results
            problems[variant] = f"export failed: {short_error(error)}"
            logger.warning("%s: %s", variant, problems[variant])

    config = load_config(model_path)
    if "onnx-fp32" in wanted or "onnx-int8" in wanted:
        step("onnx-fp32", lambda: optimize_onnx(raw, model_path / OPTIMIZED_ONNX, config))
        if "onnx-fp32" in problems and "onnx-int8" in wanted:
            problems["onnx-int8"] = "needs the optimised ONNX graph, which failed"
        elif "onnx-int8" in wanted:
            step("onnx-int8", lambda: quantize_onnx_dynamic(model_path / OPTIMIZED_ONNX,
                                                            model_path / variant_file("onnx-int8")))
        if "onnx-fp32" not in variants:
            problems.pop("onnx-fp32", None)
    if "openvino-int8" in wanted:
        def build_openvino() -> Path:
            shell = load_torch_model(kind, model_path, "float32", device="cpu")
            inputs = calibration_inputs(shell, kind, calibration_samples, calibration_count)
            return quantize_openvino_static(raw, model_path / OPENVINO_INT8, inputs)

        step("openvino-int8", build_openvino)
    return problems


def load_config(model_path: str | Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model_path))


# ----------------------------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------------------------
def throughputs_in_turns(runs: dict[str, Callable[[list], object]], items: Sequence, batch_size: int,
                         repeats: int = 3) -> dict[str, float]:
    """Items per second of each run on the same items: median of `repeats` timed passes, each after a one-batch
    warm-up, the variants taking turns so that a busy machine slows them alike."""
    from ragdistill.core.speed import items_per_second

    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(items_per_second(run, list(items), warmup=batch_size))
    return {name: float(np.median(values)) for name, values in rates.items()}


def latencies_in_turns(runs: dict[str, Callable[[list], object]], items: Sequence, warmup: int = 3
                       ) -> dict[str, dict[str, float]]:
    """p50 / p95 / mean milliseconds of one call on one item (batch of one, as a service gets a query), the
    variants taking turns item by item."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for item in list(items)[:warmup]:
        for run in runs.values():
            run([item])
    for item in items:
        for name, run in runs.items():
            started = time.perf_counter()
            run([item])
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
                   "mean_ms": float(statistics.fmean(values))} for name, values in times.items() if values}


@dataclass
class VariantResult:
    variant: str
    metrics: dict[str, float] = field(default_factory=dict)  # map, mrr@10, ndcg@10
    scores: list[np.ndarray] = field(default_factory=list)   # per query, the candidates' scores
    spearman_teacher: float | None = None
    spearman_fp32: float | None = None
    throughput: float | None = None
    latency: dict[str, float] = field(default_factory=dict)
    size_bytes: int | None = None
    problem: str | None = None

    def to_json(self) -> dict:
        return {"variant": self.variant, "metrics": self.metrics, "spearman_vs_teacher": self.spearman_teacher,
                "spearman_vs_torch_fp32": self.spearman_fp32, "throughput": self.throughput, "latency": self.latency,
                "size_bytes": self.size_bytes, "problem": self.problem}


def score_queries(kind: str, model, samples: Sequence[RerankingSample], batch_size: int
                  ) -> tuple[dict[str, float], list[np.ndarray]]:
    """MAP / MRR@10 / NDCG@10 from the project's evaluators, and per query the candidates' scores."""
    if kind == "embedder":
        from ragdistill.embedding.evaluation import evaluate_student

        result = evaluate_student(model, samples, batch_size)
        return {k: result.metrics[k] for k in ("map", "mrr@10", "ndcg@10")}, result.similarities
    from ragdistill.reranker.evaluation import evaluate_cross_encoder, split_per_query

    metrics, scores = evaluate_cross_encoder(model, samples, batch_size)
    return metrics, [np.asarray(s, dtype=np.float64) for s in split_per_query(scores, samples)]


def speed_items(kind: str, samples: Sequence[RerankingSample], limit: int) -> list:
    """What one call gets: distinct texts (embedder) or (query, passage) pairs (reranker), in file order."""
    if kind == "embedder":
        from ragdistill.embedding.evaluation import speed_sample

        return speed_sample(samples, limit)
    from ragdistill.reranker.evaluation import flat_pairs

    return flat_pairs(samples)[:limit]


def latency_items(kind: str, samples: Sequence[RerankingSample], limit: int) -> list:
    """One per served request: a query to embed (embedder), a (query, passage) pair to score (reranker)."""
    if kind == "embedder":
        return [s.query for s in samples][:limit]
    return [(s.query, s.candidates[0]) for s in samples][:limit]


def model_runner(kind: str, model, batch_size: int) -> Callable[[list], object]:
    if kind == "embedder":
        return lambda items: model.encode(list(items), batch_size=batch_size, show_progress_bar=False)
    return lambda items: model.predict(list(items), batch_size=batch_size, show_progress_bar=False)


def measure_variants(kind: str, model_path: str | Path, variants: Sequence[str], samples: Sequence[RerankingSample],
                     teacher_scores: Sequence[np.ndarray] | None, problems: dict[str, str], batch_size: int = 32,
                     speed_count: int = 512, latency_count: int = 200, max_length: int = 0, repeats: int = 3
                     ) -> list[VariantResult]:
    """Quality of every variant on the test samples, then its speed (batch `batch_size`) and latency (batch 1),
    all variants loaded together so they take turns on the CPU."""
    from tqdm.auto import tqdm

    from ragdistill.embedding.evaluation import rank_agreement

    results = {v: VariantResult(v, problem=problems.get(v)) for v in variants}
    models = {}
    for variant in tqdm([v for v in variants if not results[v].problem], desc="quality per variant", unit="variant"):
        result = results[variant]
        try:
            model = load_variant(kind, model_path, variant, max_length)
            result.metrics, result.scores = score_queries(kind, model, samples, batch_size)
        except Exception as error:  # a runtime that fails on this model: reported, the others still measured
            result.problem = f"could not run: {short_error(error)}"
            logger.warning("%s: %s", variant, result.problem)
            continue
        models[variant] = model
        result.size_bytes = variant_size_bytes(model_path, variant)
        if teacher_scores is not None:
            result.spearman_teacher = rank_agreement(result.scores, teacher_scores)
    reference = results.get("torch-fp32")
    for result in results.values():
        if reference is not None and reference.scores and result.scores:
            result.spearman_fp32 = rank_agreement(result.scores, reference.scores)
    if models:
        runs = {variant: model_runner(kind, model, batch_size) for variant, model in models.items()}
        logger.info("timing %d variants: %d items at batch %d, then %d single items", len(runs), speed_count,
                    batch_size, latency_count)
        rates = throughputs_in_turns(runs, speed_items(kind, samples, speed_count), batch_size, repeats)
        latencies = latencies_in_turns(runs, latency_items(kind, samples, latency_count))
        for variant in models:
            results[variant].throughput = rates[variant]
            results[variant].latency = latencies.get(variant, {})
    return [results[v] for v in variants]


def export_and_measure(kind: str, model_path: str | Path, samples: Sequence[RerankingSample],
                       teacher_scores: Sequence[np.ndarray] | None, calibration_files: str, knobs: ExportArguments
                       ) -> list[VariantResult]:
    """An export stage's work: every chosen variant written into the model folder (the OpenVINO one calibrated on
    the training files), then all of them measured on the test samples."""
    from ragdistill.core.cli import split_paths

    calibration: list[RerankingSample] = []
    if "openvino-int8" in knobs.variant_list:
        paths = split_paths(calibration_files)
        if not paths:
            raise InputError(None, "--calibration_files: the openvino-int8 variant needs a training file")
        calibration = read_calibration_samples(paths, knobs.calibration_items)
    problems = export_variants(kind, model_path, knobs.variant_list, calibration, knobs.calibration_items)
    return measure_variants(kind, model_path, knobs.variant_list, samples, teacher_scores, problems,
                            knobs.student_batch_size, knobs.speed_items, knobs.latency_items, knobs.max_seq_length,
                            knobs.repeats)


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class TeacherRow:
    name: str
    metrics: dict[str, float]
    throughput: float | None = None
    setup: str = ""


def torch_reference(results: Sequence[VariantResult]) -> VariantResult | None:
    """The measured torch fp32 student, the row every variant is compared with (None if it was not measured)."""
    return next((r for r in results if r.variant == "torch-fp32" and r.metrics), None)


def best_variant(results: Sequence[VariantResult], keep: float = 0.99) -> VariantResult | None:
    """The fastest variant (throughput) whose MAP is at least `keep` x the torch fp32 student's."""
    reference = torch_reference(results)
    if reference is None:
        return None
    kept = [r for r in results if r.metrics and r.throughput and r.metrics["map"] >= keep * reference.metrics["map"]]
    return max(kept, key=lambda r: r.throughput, default=None)


def table(results: Sequence[VariantResult], teacher: TeacherRow | None, unit: str, batch_size: int
          ) -> tuple[list[str], list[list[str]]]:
    headers = ["variant", "MAP", "MRR@10", "NDCG@10", "MAP vs fp32", "Spearman vs teacher", "Spearman vs fp32",
               f"{unit} (batch {batch_size})", "speed-up vs fp32", "p50 ms (batch 1)", "p95 ms (batch 1)", "MB"]
    reference = torch_reference(results)
    rows = []
    for r in results:
        if not r.metrics:
            rows.append([r.variant] + ["-"] * (len(headers) - 1))
            continue
        relative = (r.metrics["map"] / reference.metrics["map"] - 1) if reference else None
        speedup = r.throughput / reference.throughput if reference and reference.throughput and r.throughput else None
        rows.append([r.variant, *(format_number(r.metrics[name]) for name in ("map", "mrr@10", "ndcg@10")),
                     "-" if relative is None else f"{relative:+.2%}", format_number(r.spearman_teacher),
                     format_number(r.spearman_fp32), format_number(r.throughput, 1),
                     "-" if speedup is None else f"{speedup:.2f}x", format_number(r.latency.get("p50_ms"), 2),
                     format_number(r.latency.get("p95_ms"), 2),
                     "-" if r.size_bytes is None else f"{r.size_bytes / 1e6:.1f}"])
    if teacher is not None:
        rows.append([f"teacher ({Path(teacher.name).name})",
                     *(format_number(teacher.metrics.get(name)) for name in ("map", "mrr@10", "ndcg@10")),
                     "-", "1.0000", "-", format_number(teacher.throughput, 1), "-", "-", "-", "-"])
    return headers, rows


def summary_lines(results: Sequence[VariantResult], teacher: TeacherRow | None, unit: str) -> list[str]:
    lines = []
    best = best_variant(results)
    reference = torch_reference(results)
    if best is not None and reference is not None:
        line = (f"best variant (fastest that keeps >= 99% of the torch fp32 student's MAP): {best.variant}, "
                f"{best.throughput:.1f} {unit}, {best.throughput / reference.throughput:.2f}x the torch fp32 "
                f"student, MAP {best.metrics['map']:.4f} ({best.metrics['map'] / reference.metrics['map'] - 1:+.2%})")
        if teacher is not None and teacher.throughput:
            line += f", {best.throughput / teacher.throughput:.1f}x the teacher's {unit}"
        lines.append(line)
    for r in results:
        if r.problem:
            lines.append(f"{r.variant} left out: {r.problem}")
    return lines


def save_report(results: Sequence[VariantResult], teacher: TeacherRow | None, output_dir: str | Path, title: str,
                unit: str, batch_size: int, notes: Sequence[str] = (), extra: dict | None = None,
                name: str = "export_results") -> dict[str, Path]:
    """Print the table; save <name>.json, <name>.md and <name>.png (MAP against p95 latency at batch 1)."""
    from ragdistill.core.jsonl import atomic_open, write_json
    from ragdistill.core.plots import labelled_scatter
    from ragdistill.core.report import to_markdown, to_text

    output_dir = Path(output_dir)
    headers, rows = table(results, teacher, unit, batch_size)
    notes = [*summary_lines(results, teacher, unit), *notes]
    print("\n" + to_text(headers, rows, title, notes=notes))
    paths = {"json": output_dir / f"{name}.json", "markdown": output_dir / f"{name}.md",
             "png": output_dir / f"{name}.png"}
    best = best_variant(results)
    write_json(paths["json"], {
        "title": title, "unit": unit, "batch_size": batch_size, "variants": [r.to_json() for r in results],
        "teacher": None if teacher is None else {"name": teacher.name, "metrics": teacher.metrics,
                                                 "throughput": teacher.throughput, "setup": teacher.setup},
        "best_variant": None if best is None else best.variant, "notes": notes,
        "table": {"headers": headers, "rows": rows}, **(extra or {})})
    with atomic_open(paths["markdown"]) as handle:
        handle.write(to_markdown(headers, rows, title, notes))
    points = [(r.latency["p95_ms"], r.metrics["map"], r.variant) for r in results if r.metrics and r.latency]
    lines = {f"teacher MAP ({Path(teacher.name).name})": teacher.metrics["map"]} if teacher and "map" in teacher.metrics else {}
    if points:
        labelled_scatter(points, paths["png"], xlabel="p95 latency at batch 1 (ms)", ylabel="MAP", title=title,
                         hlines=lines)
    else:
        del paths["png"]
    logger.info(f"saved {', '.join(str(p) for p in paths.values())}")
    return paths
