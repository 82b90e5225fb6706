"""Inference engines: what runs a checkpoint's model on a prepared batch.

An engine maps a normalised, padded float32 NCHW batch (a ``torch.Tensor`` on the engine's device, as
``Predictor.prepare`` makes it) to the model's logits as a ``torch.Tensor`` (N, K, H, W); the
predictor crops, applies softmax and converts to float16 itself, so every engine's output goes
through the same post-processing.

- ``TorchEngine``: PyTorch, the reference (channels_last, ``inference_mode``, optional autocast).
- ``OnnxEngine``: the model exported once to ONNX (dynamic batch/height/width) and run by ONNX
  Runtime's CPU execution provider. The ``.onnx`` file is cached under
  ``$GEOSEG_CACHE_DIR/onnx`` (default ``~/.cache/geoseg/onnx``), keyed by the checkpoint's SHA-256.
  Needs the optional ``onnxruntime`` package, and ``onnx`` to export (the ``geoseg[onnx]`` extra).
- ``OpenVinoEngine``: the model converted once to OpenVINO IR (float32 weights, dynamic
  batch/height/width; cached next to the ONNX files under ``openvino/``) and run by OpenVINO's CPU
  plugin (``openvino`` is a dependency; the ``auto`` engine falls back to torch without it).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import torch

from geoseg.errors import CheckpointError, OptionError
from geoseg.inference.openvino import cache_dir, infer_request, ir_cached, ir_path
from geoseg.inference.precision import precision_name, torch_autocast_dtype
from geoseg.io.staging import atomic_path
from geoseg.models.checkpoint import Checkpoint

if TYPE_CHECKING:
    import onnxruntime

EngineName = Literal["auto", "torch", "onnx", "openvino"]
ENGINES: tuple[str, ...] = get_args(EngineName)
log = logging.getLogger(__name__)
ONNX_OPSET = 17
# Part of the cache key: bump when the export itself changes (opset, exporter options, I/O names).
ONNX_EXPORT_VERSION = 1
_INPUT, _OUTPUT = "image", "logits"


class Engine(Protocol):
    """Runs a model: float32 NCHW batch (a tensor on ``device``) → logits (N, K, H, W) on ``device``.

    ``precision``: what it computes in (``f32``/``bf16``/``fp16``), as the engine itself reports it."""

    name: str
    device: torch.device
    precision: str

    def run(self, x: torch.Tensor) -> torch.Tensor: ...


class TorchEngine:
    """The PyTorch reference engine.

    ``autocast_dtype`` (e.g. ``torch.float16`` on CUDA, ``torch.bfloat16`` on CPU) runs the model
    under ``torch.autocast``; ``None`` runs it in float32. ``channels_last``: NHWC weights and inputs
    (faster on the CPU and on GPUs: benchmarks/RESULTS_gpu.md, benchmarks/ENGINES.md).
    """

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = True,
    ) -> None:
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.precision = precision_name(autocast_dtype or torch.float32)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device).eval().to(memory_format=self.memory_format)
        if device.type == "cuda":
            # tiles share one shape: cuDNN's measured choice of kernels pays back after the first batch
            # (bundled model, fp16, batch 32 on an H200: predict 308 → 345 tiles/s)
            torch.backends.cudnn.benchmark = True

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)  # page-locked: an asynchronous copy
        x = x.contiguous(memory_format=self.memory_format)
        enabled = self.autocast_dtype is not None
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=enabled):
            return self.model(x)


def _torch_model(checkpoint: Checkpoint) -> torch.nn.Module:
    if checkpoint.model is None:  # loaded for its metadata only
        raise CheckpointError("the checkpoint was loaded without its torch model")
    return checkpoint.model


def model_key(checkpoint: Checkpoint) -> str:
    """The checkpoint file's SHA-256, or (for an in-memory checkpoint without one) that of its weights."""
    if checkpoint.sha256:
        return checkpoint.sha256
    assert checkpoint.model is not None
    h = hashlib.sha256(repr((checkpoint.meta.arch, checkpoint.meta.encoder)).encode())
    for k, v in sorted(checkpoint.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def onnx_path(checkpoint: Checkpoint, cache: Path | None = None) -> Path:
    """Where the checkpoint's ONNX export is cached."""
    name = f"{model_key(checkpoint)}-opset{ONNX_OPSET}-v{ONNX_EXPORT_VERSION}.onnx"
    return (cache or cache_dir()) / "onnx" / name


def export_onnx(model: torch.nn.Module, in_channels: int, path: Path) -> Path:
    """Export ``model`` (float32, CPU) to ``path`` atomically, dynamic in batch, height and width."""
    example = torch.zeros(1, in_channels, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter (dynamo=False) needs no onnxscript and handles smp's
        # models with dynamic spatial axes; torch says it is deprecated (DeprecationWarning).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            tmp,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[_INPUT],
            output_names=[_OUTPUT],
            dynamic_axes={_INPUT: axes, _OUTPUT: axes},
            do_constant_folding=True,
        )
    return path


def openvino_path(checkpoint: Checkpoint | str, cache: Path | None = None) -> Path:
    """Where the checkpoint's OpenVINO IR (``.xml``, weights in the ``.bin`` beside it) is cached
    (``checkpoint``: a checkpoint or its file's SHA-256)."""
    return ir_path(checkpoint if isinstance(checkpoint, str) else model_key(checkpoint), cache)


def _require(module: str, engine: str = "onnx") -> Any:
    """Import an optional dependency of an engine, with a one-line hint if it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = " (or geoseg[onnx])" if engine == "onnx" else ""
        raise ImportError(f"the {engine} engine needs {module}: pip install {module}{extra}") from None


class OnnxEngine:
    """ONNX Runtime (CPUExecutionProvider) running the checkpoint's model exported to ONNX.

    The export happens once per checkpoint and is cached (``onnx_path``); ``exported`` says whether
    this instance had to export it. ``threads`` is ONNX Runtime's intra-op thread count (0: torch's
    current thread count); inter-op parallelism is off and graph optimisations are all on.
    """

    name = "onnx"

    precision = "f32"  # ONNX Runtime's CPU provider runs the float32 graph as exported

    def __init__(self, checkpoint: Checkpoint, threads: int = 0, cache: Path | None = None) -> None:
        ort = _require("onnxruntime")
        self.device = torch.device("cpu")
        self.threads = threads if threads > 0 else torch.get_num_threads()
        self.path = onnx_path(checkpoint, cache)
        self.exported = False
        if not self.path.is_file():
            self._export(checkpoint)
        try:
            self.session = self._session(ort)
        except Exception:  # a damaged cache file (onnxruntime raises its own exception types)
            if self.exported:
                raise
            self._export(checkpoint)
            self.session = self._session(ort)

    def _export(self, checkpoint: Checkpoint) -> None:
        _require("onnx")  # torch's exporter serialises with it
        model = _torch_model(checkpoint)
        device = next(model.parameters()).device
        export_onnx(model.to("cpu").eval(), checkpoint.meta.in_channels, self.path)
        model.to(device)
        self.exported = True

    def _session(self, ort: Any) -> onnxruntime.InferenceSession:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def run(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run([_OUTPUT], {_INPUT: arr})
        return torch.from_numpy(logits)


class OpenVinoEngine:
    """OpenVINO Runtime (CPU plugin) running the checkpoint's model converted to OpenVINO IR.

    The conversion (``openvino.convert_model`` from the torch model) happens once per checkpoint and
    is cached (``openvino_path``); ``converted`` says whether this instance had to convert it. Weights
    stay float32. ``threads``: OpenVINO's inference threads (0: torch's current thread count).
    ``precision``: the inference precision asked of the plugin (``geoseg.inference.precision``; None:
    f32); the attribute then holds what the compiled model reports. ``run`` is meant for one thread at a
    time (the predictor's inference thread).
    """

    name = "openvino"

    def __init__(
        self,
        checkpoint: Checkpoint,
        threads: int = 0,
        cache: Path | None = None,
        precision: str | None = None,
    ) -> None:
        ov = _require("openvino", "openvino")
        self.device = torch.device("cpu")
        self.threads = threads if threads > 0 else torch.get_num_threads()
        self.path = openvino_path(checkpoint, cache)
        self.converted = False
        core = ov.Core()
        if not self.cached(self.path):
            if checkpoint.model is None:
                raise FileNotFoundError(f"{self.path}: no converted model, and no torch model to convert")
            self._convert(checkpoint, ov)
        try:
            model = core.read_model(str(self.path))
        except RuntimeError:  # a damaged cache file
            if self.converted or checkpoint.model is None:
                raise
            self._convert(checkpoint, ov)
            model = core.read_model(str(self.path))
        self.request, self.precision = infer_request(core, model, self.threads, precision)

    cached = staticmethod(ir_cached)

    def _convert(self, checkpoint: Checkpoint, ov: Any) -> None:
        model = checkpoint.model
        assert model is not None
        device = next(model.parameters()).device
        example = torch.zeros(1, checkpoint.meta.in_channels, 64, 64)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=self.path.parent))
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # convert_model traces with torch.jit
                converted = ov.convert_model(model.to("cpu").eval(), example_input=example)
            ov.save_model(converted, str(tmp / "model.xml"), compress_to_fp16=False)
            os.replace(tmp / "model.bin", self.path.with_suffix(".bin"))  # weights first: the .xml
            os.replace(tmp / "model.xml", self.path)  # present means both are complete
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            model.to(device)
        self.converted = True

    def run(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        self.request.infer({0: arr})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def make_engine(
    name: EngineName,
    checkpoint: Checkpoint,
    device: torch.device,
    threads: int = 0,
    amp: bool = False,
    precision: str | None = None,
) -> Engine:
    """The named engine for ``checkpoint`` on ``device``, computing in ``precision``
    (``geoseg.inference.precision``: None is f32 on the CPU, float16 autocast on CUDA with ``amp``).

    ``auto``: openvino on the CPU where it is installed and converts the model (faster end to end than
    torch, the same labels to within rounding: benchmarks/RESULTS.md, benchmarks/ENGINES.md), else torch.

    ``threads``: the onnx/openvino engine's threads (0: torch's thread count; torch's own count is
    set by the caller, e.g. ``get_predictor``). ``amp``: float16 autocast, torch engine on CUDA only.
    """
    if name == "auto":
        if device.type == "cpu":
            try:
                return OpenVinoEngine(checkpoint, threads, precision=precision)
            except ImportError:  # openvino is not installed
                pass
            except Exception as exc:  # noqa: BLE001 - any conversion problem: the reference engine runs it
                log.warning("openvino cannot run %s (%s); using torch", checkpoint.meta.arch, exc)
        name = "torch"
    if name == "torch":
        return TorchEngine(
            _torch_model(checkpoint), device, torch_autocast_dtype(precision, device.type, amp)
        )
    if name in ("onnx", "openvino"):
        if device.type != "cpu":
            raise OptionError(f"the {name} engine runs on CPU only (device {device}); use --engine torch")
        if name == "onnx":
            if precision not in (None, "f32", "auto"):
                raise OptionError(
                    f"the onnx engine runs f32 only (--precision {precision}); use openvino or torch"
                )
            return OnnxEngine(checkpoint, threads)
        return OpenVinoEngine(checkpoint, threads, precision=precision)
    raise OptionError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
