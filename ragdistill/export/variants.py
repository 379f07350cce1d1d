"""Serve a trained student: export it and quantise it to int8 (`ragdistill.export.evaluation` measures every variant).

Every function takes the student's pipeline (ragdistill.core.pipeline.Pipeline), which says how its model loads,
tokenises and is rebuilt; nothing here depends on which pipeline it is.

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
nncf.quantize), and an exported graph runs as the input module of a sentence-transformers model, in place of its
PyTorch Transformer module (`use_exported`): tokenisation, pooling, normalisation, `encode`, `predict` and the
evaluators stay sentence-transformers' own, so every variant is measured by the same code as the torch student.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ragdistill.core.errors import InputError
from ragdistill.core.mteb import RerankingSample
from ragdistill.core.pipeline import Pipeline

logger = logging.getLogger(__name__)

VARIANTS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "openvino-int8")
BACKENDS = ("torch", "onnx", "openvino")
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
    max_seq_length: int = field(default=512, metadata={
        "help": "Student tokens per text or pair, as in training and evaluation (0 = the model's own setting)."})

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
def load_torch_model(pipeline: Pipeline, path: str | Path, dtype: str = "float32", max_length: int = 0, device=None,
                     attn_implementation: str | None = None):
    """The student on PyTorch, loaded as its pipeline loads it; `attn_implementation` switches its attention (the
    ONNX trace needs "eager")."""
    from ragdistill.core.hardware import default_device, torch_dtype

    model = pipeline.load_student(str(path), max_length, torch_dtype(dtype), device or default_device())
    if attn_implementation:
        model.transformers_model.set_attn_implementation(attn_implementation)
    return model


@functools.cache
def exported_module_class() -> type:
    """ExportedTransformer, defined on first use, so that importing this module does not import sentence-transformers.

    A sentence-transformers input module (the documented extension point for custom modules) that tokenises with the
    student's own Transformer module (`preprocess`, tokenizer, max_seq_length) and runs the exported graph on the CPU
    with ONNX Runtime or OpenVINO, giving the features the next modules read: `token_embeddings` for pooling
    (embedder) or `scores` for CrossEncoder.predict (reranker)."""
    from sentence_transformers.base.modules import InputModule

    class ExportedTransformer(InputModule):
        config_keys = ["backend", "path"]

        def __init__(self, source, path: str | Path, backend: str, pipeline: Pipeline, threads: int = 0):
            super().__init__()
            self.backend = backend
            self.path = str(path)
            self.tokenizer = source.tokenizer
            self._preprocess = source.preprocess  # a bound method, so `source` is not registered as a submodule
            self._modalities = list(source.modalities)
            self.feature = pipeline.graph_feature
            output_name = pipeline.graph_output
            if backend == "onnx":
                import onnxruntime as ort

                options = ort.SessionOptions()
                if threads:
                    options.intra_op_num_threads = threads
                session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
                self.input_names = [node.name for node in session.get_inputs()]
                self._run = lambda feeds: session.run([output_name], feeds)[0]
            elif backend == "openvino":
                import openvino as ov

                properties = {"INFERENCE_NUM_THREADS": threads} if threads else {}
                compiled = ov.Core().compile_model(self.path, "CPU", properties)
                self.input_names = [port.get_any_name() for port in compiled.inputs]
                request = compiled.create_infer_request()
                output = compiled.output(0)
                # a copy: the request reuses its output buffer
                self._run = lambda feeds: np.array(request.infer(feeds)[output])
            else:
                raise ValueError(f"backend must be 'onnx' or 'openvino', got {backend!r}")

        @property
        def modalities(self) -> list:
            return self._modalities

        @property
        def max_seq_length(self) -> int | None:
            """Where the Transformer module keeps it too: the tokenizer truncates to it."""
            return self.tokenizer.model_max_length

        @max_seq_length.setter
        def max_seq_length(self, value: int | None) -> None:
            self.tokenizer.model_max_length = value

        def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict:
            return self._preprocess(inputs, prompt=prompt, **kwargs)

        def forward(self, features: dict, **kwargs) -> dict:
            input_ids = features["input_ids"]
            feeds = {}
            for name in self.input_names:
                value = features.get(name)
                if value is None:  # e.g. token_type_ids the tokenizer did not return: BERT's default, all zeros
                    value = torch.zeros_like(input_ids)
                feeds[name] = value.detach().cpu().numpy().astype(np.int64)
            features[self.feature] = torch.from_numpy(np.asarray(self._run(feeds), dtype=np.float32))
            return features

        def save(self, output_path: str, *args, **kwargs) -> None:
            raise NotImplementedError("an exported student is served from its model folder: save the torch student")

    return ExportedTransformer


def use_exported(model, pipeline: Pipeline, path: str | Path, backend: str, threads: int = 0):
    """`model` (a SentenceTransformer or one-logit CrossEncoder) rebuilt to run on the exported graph at `path`
    instead of PyTorch: the same tokenisation, prompts, pooling, normalisation and activation, on the CPU. Returns
    the new model; `model` is spent (its PyTorch weights are released)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"no exported {backend} model here: run the export stage (export.sh) first")
    problem = backend_problem(backend)
    if problem:
        raise InputError(path, f"the {backend} backend cannot run: {problem}")
    source, *rest = model
    exported = exported_module_class()(source, path, backend, pipeline, threads)
    source.to("meta")  # only its tokenisation is still used: the PyTorch weights are freed
    return pipeline.rebuild(model, [exported, *rest], device="cpu", backend=backend)


def exported_file(backend: str, file: str | None = None) -> str:
    """The exported model file a backend ("onnx" or "openvino") runs from: `file`, or the int8 variant the export
    stage writes."""
    return file or variant_file(f"{backend}-int8")


def load_variant(pipeline: Pipeline, path: str | Path, variant: str, max_length: int = 0):
    """The student as one variant runs it: torch in fp32 / bf16, or the exported graph of an ONNX / OpenVINO one."""
    if variant not in VARIANTS:
        raise InputError(None, f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    backend = backend_of(variant)
    if backend == "torch":
        return load_torch_model(pipeline, path, "bfloat16" if variant.endswith("bf16") else "float32", max_length)
    model = load_torch_model(pipeline, path, "float32", max_length, device="cpu")
    return use_exported(model, pipeline, Path(path) / variant_file(variant), backend)


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
def _example_inputs(model, pipeline: Pipeline) -> dict:
    """A padded batch of two, so the traced graph keeps the attention mask (an all-ones mask may be dropped)."""
    features = pipeline.tokenize(model.tokenizer, pipeline.example_items(), padding=True, return_tensors="pt")
    return {name: features[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in features}


def export_onnx(pipeline: Pipeline, model_path: str | Path, output: str | Path, opset: int = 17) -> Path:
    """The student's transformer as an ONNX graph (fp32, dynamic batch and sequence length)."""
    model = load_torch_model(pipeline, model_path, "float32", device="cpu", attn_implementation="eager")
    hf_model = model.transformers_model.eval()
    inputs = _example_inputs(model, pipeline)
    output_name = pipeline.graph_output

    class SingleOutput(torch.nn.Module):  # the one output sentence-transformers reads, not the pooler's too
        def __init__(self):
            super().__init__()
            self.inner = hf_model

        def forward(self, *args):
            return self.inner(**dict(zip(inputs, args)), return_dict=True)[output_name]

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[output_name] = dict(pipeline.graph_output_axes)
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


def calibration_inputs(model, pipeline: Pipeline, samples: Sequence[RerankingSample], count: int) -> list[dict]:
    """Up to `count` tokenised inputs (batch of one, unpadded) from training data (Pipeline.calibration_items)."""
    result = []
    for item in pipeline.calibration_items(samples, count):
        features = pipeline.tokenize(model.tokenizer, [item], truncation=True, max_length=model.max_seq_length,
                                     return_tensors="np")
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


def export_variants(pipeline: Pipeline, model_path: str | Path, variants: Sequence[str],
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
        export_onnx(pipeline, model_path, raw)
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
            shell = load_torch_model(pipeline, model_path, "float32", device="cpu")
            inputs = calibration_inputs(shell, pipeline, calibration_samples, calibration_count)
            return quantize_openvino_static(raw, model_path / OPENVINO_INT8, inputs)

        step("openvino-int8", build_openvino)
    return problems


def load_config(model_path: str | Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model_path))
