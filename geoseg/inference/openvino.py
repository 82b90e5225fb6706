"""A torch-free predictor for checkpoints whose OpenVINO conversion is cached: CPU workers' default.

The same steps as ``geoseg.inference.predictor.Predictor`` with the openvino engine (normalise, zero nodata,
pad, run, crop, softmax, float16), padding in NumPy and the rest inside the OpenVINO graph, so a CPU worker
never imports torch (seconds and hundreds of MB of RSS per process). Where
it does not apply (a CUDA driver with ``--device auto``, another engine, no cached conversion yet)
``predictor_for`` answers None and the torch predictor runs, converting the model on first use.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geoseg.inference.offheap import offheap_empty
from geoseg.inference.precision import openvino_hint, precision_name
from geoseg.models.meta import CheckpointMeta, file_sha256, read_meta

CACHE_ENV = "GEOSEG_CACHE_DIR"
# Part of the cache key: bump when the conversion itself changes.
OPENVINO_CONVERT_VERSION = 1
PAD_MULTIPLE = 32
# Set to "0" in embedded workers' environment where ``runs_without_torch``: they then skip preloading torch.
WORKER_TORCH_ENV = "GEOSEG_WORKER_TORCH"


def cache_dir() -> Path:
    """``$GEOSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/geoseg``, else ``~/.cache/geoseg``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "geoseg"


def ir_path(key: str, cache: Path | None = None) -> Path:
    """Where the OpenVINO IR (``.xml``, weights in the ``.bin`` beside it) of the model whose key (the
    checkpoint file's SHA-256) is ``key`` is cached."""
    return (cache or cache_dir()) / "openvino" / f"{key}-v{OPENVINO_CONVERT_VERSION}.xml"


def ir_cached(path: Path) -> bool:
    """Whether a converted model (``.xml`` and its ``.bin``) is at ``path``."""
    return path.is_file() and path.with_suffix(".bin").is_file()


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is installed (without importing torch): ``--device auto`` may mean CUDA."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@lru_cache(maxsize=16)
def runs_without_torch(checkpoint_path: str, device: str, engine: str) -> bool:
    """Whether a worker can run this checkpoint with ``OpenVinoPredictor`` (no torch at all)."""
    if engine not in ("auto", "openvino") or device not in ("auto", "cpu"):
        return False
    if device == "auto" and cuda_driver_present():
        return False
    if importlib.util.find_spec("openvino") is None:
        return False
    try:
        return ir_cached(ir_path(file_sha256(checkpoint_path)))
    except OSError:
        return False


def infer_request(core: Any, model: Any, threads: int, precision: str | None = None) -> tuple[Any, str]:
    """An inference request of ``model`` compiled for OpenVINO's CPU plugin with ``threads`` threads in
    ``precision`` (stated explicitly: see ``geoseg.inference.precision``), and the precision the compiled
    model reports it runs in (read back: the plugin may fall back to what the CPU supports)."""
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    config |= openvino_hint(precision)
    compiled = core.compile_model(model, "CPU", config)
    return compiled.create_infer_request(), precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))


class _EngineInfo:
    name = "openvino"

    def __init__(self) -> None:
        self.precision = ""  # as the compiled model reports it


def with_pre_and_post(model: Any, meta: CheckpointMeta, pixel_type: Any) -> Any:
    """``model`` (the converted network: normalised float32 in, logits out) wrapped in the predictor's
    own steps: raw pixels of OpenVINO type ``pixel_type`` and a uint8 (N, 1, h, w) validity mask in,
    normalisation and nodata zeroing in front, softmax over the classes and float16 behind.

    OpenVINO's kernels do these faster than the NumPy passes, with the same argmax (benchmarks/RESULTS.md).
    """
    import openvino as ov
    import openvino.opset13 as ops

    bands = meta.in_channels
    mean = np.asarray(meta.normalization.mean, np.float32).reshape(1, bands, 1, 1)
    std = np.asarray(meta.normalization.std, np.float32).reshape(1, bands, 1, 1)
    pixels = ops.parameter([-1, bands, -1, -1], pixel_type, name="pixels")
    valid = ops.parameter([-1, 1, -1, -1], ov.Type.u8, name="valid")
    x = ops.divide(ops.subtract(ops.convert(pixels, "f32"), ops.constant(mean)), ops.constant(std))
    x = ops.multiply(x, ops.convert(valid, "f32"))
    for target in list(model.input(0).get_target_inputs()):
        target.replace_source_output(x.output(0))
    logits = model.get_results()[0].input_value(0)
    probs = ops.convert(ops.softmax(logits, 1), "f16")
    return ov.Model([probs.output(0)], [pixels, valid], "geoseg_predictor")


class OpenVinoPredictor:
    """``Predictor``'s interface (``meta``, ``engine.name``, ``n_classes``, ``predict``, ``predict_timed``)
    over a cached OpenVINO IR, without torch: normalisation, softmax and the float16 cast run inside the
    OpenVINO graph (``with_pre_and_post``), compiled once per pixel dtype. Forward passes run on one
    inference thread, as in ``Predictor``.
    """

    def __init__(self, meta: CheckpointMeta, xml: Path, threads: int, precision: str | None = None) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.xml = xml
        self.threads = threads
        self.precision = precision
        self.meta = meta
        self.engine = _EngineInfo()
        self._requests: dict[np.dtype, Any] = {}
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoseg-infer")
        self._request(np.dtype(meta.input_dtype))  # compiled now: a broken cache fails here, not in a task

    @property
    def n_classes(self) -> int:
        return len(self.meta.classes)

    def _request(self, dtype: np.dtype) -> Any:
        if dtype not in self._requests:
            import openvino as ov

            model = with_pre_and_post(self.core.read_model(str(self.xml)), self.meta, ov.Type(dtype))
            self._requests[dtype], self.engine.precision = infer_request(
                self.core, model, self.threads, self.precision
            )
        return self._requests[dtype]

    def prepare(self, batch: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, C, h, w) raw pixels + (N, h, w) validity → both padded to the model's multiple (the
        validity as uint8 (N, 1, h', w')); the graph normalises them."""
        x = np.asarray(batch)
        v = np.asarray(valid, np.bool_)[:, None].view(np.uint8)
        h, w = x.shape[-2:]
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if ph or pw:
            mode: Literal["reflect", "edge"] = "reflect" if ph < h and pw < w else "edge"
            pad = ((0, 0), (0, 0), (0, ph), (0, pw))
            x, v = np.pad(x, pad, mode=mode), np.pad(v, pad, mode=mode)
        return np.ascontiguousarray(x), np.ascontiguousarray(v)

    def _forward(self, x: np.ndarray, v: np.ndarray, out_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        request = self._request(x.dtype)
        request.infer({0: x, 1: v})
        # copied out of the request's buffer, which the next pass overwrites
        probs = request.get_output_tensor(0).data[:, :, : out_hw[0], : out_hw[1]]
        out = offheap_empty(probs.shape, np.float16)  # outlives this pass: kept off the heap
        np.copyto(out, probs)
        return out, time.perf_counter() - t0

    def predict(self, batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return self.predict_timed(batch, valid)[0]

    def predict_timed(self, batch: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
        """Probabilities (N, K, h, w) as float16 and the seconds the model itself ran."""
        x, v = self.prepare(batch, valid)
        return self._inference.submit(self._forward, x, v, batch.shape[-2:]).result()


@lru_cache(maxsize=4)
def _load(checkpoint_path: str, threads: int, precision: str | None) -> OpenVinoPredictor:
    xml = ir_path(file_sha256(checkpoint_path))
    return OpenVinoPredictor(read_meta(checkpoint_path), xml, threads or os.cpu_count() or 1, precision)


_lock = threading.Lock()


def predictor_for(
    checkpoint_path: str, device: str, threads: int, engine: str, precision: str | None = None
) -> OpenVinoPredictor | None:
    """The process-wide torch-free predictor of a checkpoint, or None where it does not apply (the torch
    predictor then runs). A damaged cached conversion also answers None: the torch path converts again."""
    if not runs_without_torch(checkpoint_path, device, engine):
        return None
    with _lock:
        try:
            return _load(checkpoint_path, threads, precision)
        except Exception:  # noqa: BLE001 - e.g. a damaged cache file: the torch path converts it again
            return None
