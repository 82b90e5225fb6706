"""A torch-free predictor for checkpoints whose OpenVINO conversion is cached: CPU workers' default.

The same steps as ``geoseg.infer.Predictor`` with the openvino engine (normalise, zero nodata, pad,
run, crop, softmax, float16) in NumPy, so a CPU worker never imports torch (measured here: ``import
torch`` 2.1 s and ≈ 630 MB of RSS per process). Where it does not apply (a CUDA driver with ``--device
auto``, another engine, no cached conversion yet) ``predictor_for`` answers None and the torch
predictor runs, converting the model on first use.
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
from typing import Any

import numpy as np

from geoseg.models.meta import CheckpointMeta, file_sha256, read_meta
from geoseg.offheap import offheap_empty

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


def softmax_classes(logits: np.ndarray, out: np.ndarray) -> None:
    """Softmax over axis 1 of (N, K, h, w) float32 ``logits`` into ``out`` (float16), in contiguous passes
    per class (a reduction over the strided class axis is several times slower)."""
    top = logits[:, 0].copy()
    for k in range(1, logits.shape[1]):
        np.maximum(top, logits[:, k], out=top)
    e = np.subtract(logits, top[:, None])
    np.exp(e, out=e)
    total = e[:, 0].copy()
    for k in range(1, e.shape[1]):
        total += e[:, k]
    np.divide(e, total[:, None], out=out, casting="same_kind")


def infer_request(core: Any, model: Any, threads: int) -> Any:
    """An inference request of ``model`` compiled for OpenVINO's CPU plugin with ``threads`` threads."""
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    return core.compile_model(model, "CPU", config).create_infer_request()


class _EngineInfo:
    name = "openvino"


class OpenVinoPredictor:
    """``Predictor``'s interface (``meta``, ``engine.name``, ``n_classes``, ``predict``, ``predict_timed``)
    over a cached OpenVINO IR, in NumPy. Forward passes run on one inference thread, as in ``Predictor``.
    """

    def __init__(self, meta: CheckpointMeta, xml: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        self.request = infer_request(core, core.read_model(str(xml)), threads)
        self.meta = meta
        self.engine = _EngineInfo()
        self.mean = np.asarray(meta.normalization.mean, np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(meta.normalization.std, np.float32).reshape(1, -1, 1, 1)
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoseg-infer")

    @property
    def n_classes(self) -> int:
        return len(self.meta.classes)

    def prepare(self, batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(N, C, h, w) raw pixels + (N, h, w) validity → normalised, padded float32 (nodata → 0)."""
        x = np.asarray(batch, np.float32)
        x = (x - self.mean) / self.std
        x *= np.asarray(valid, np.float32)[:, None]
        h, w = x.shape[-2:]
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "edge"
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
        return np.ascontiguousarray(x)

    def _forward(self, x: np.ndarray, out_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        self.request.infer({0: x})
        # copied out of the request's buffer, which the next pass overwrites; the softmax runs in the
        # calling task's thread, beside the next forward pass
        logits = self.request.get_output_tensor(0).data[:, :, : out_hw[0], : out_hw[1]].copy()
        return logits, time.perf_counter() - t0

    def predict(self, batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return self.predict_timed(batch, valid)[0]

    def predict_timed(self, batch: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
        """Probabilities (N, K, h, w) as float16 and the seconds the model itself ran."""
        x = self.prepare(batch, valid)
        logits, seconds = self._inference.submit(self._forward, x, batch.shape[-2:]).result()
        out = offheap_empty(logits.shape, np.float16)  # outlives this pass: kept off the heap
        softmax_classes(logits, out)
        return out, seconds


@lru_cache(maxsize=4)
def _load(checkpoint_path: str, threads: int) -> OpenVinoPredictor:
    xml = ir_path(file_sha256(checkpoint_path))
    return OpenVinoPredictor(read_meta(checkpoint_path), xml, threads or os.cpu_count() or 1)


_lock = threading.Lock()


def predictor_for(checkpoint_path: str, device: str, threads: int, engine: str) -> OpenVinoPredictor | None:
    """The process-wide torch-free predictor of a checkpoint, or None where it does not apply (the torch
    predictor then runs). A damaged cached conversion also answers None: the torch path converts again."""
    if not runs_without_torch(checkpoint_path, device, engine):
        return None
    with _lock:
        try:
            return _load(checkpoint_path, threads)
        except Exception:  # noqa: BLE001 - e.g. a damaged cache file: the torch path converts it again
            return None
