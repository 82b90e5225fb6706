"""Batched inference: normalise, pad, run the model, return per-class probabilities.

One ``Predictor`` per worker process (``get_predictor`` caches it); concurrent tasks in a worker
share it. Every forward pass runs on the predictor's own single inference thread: torch's OpenMP
team then lives on one thread (alternating Dask threads would each spin up a team that competes
for the cores), while reading and stitching in other Dask threads overlap with compute.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from geoseg.errors import OptionError
from geoseg.inference.engines import Engine, EngineName, make_engine
from geoseg.inference.offheap import offheap_empty
from geoseg.inference.openvino import PAD_MULTIPLE, OpenVinoPredictor, predictor_for
from geoseg.models.checkpoint import Checkpoint, load_checkpoint
from tiles import BlockAccumulator, TileGrid, Window, blend_weights


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError("--device cuda requested but no CUDA device is available")
    return torch.device(device)


class Predictor:
    """Applies a checkpoint's model to uint8/float image batches."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        amp: bool = False,
        engine: EngineName | Engine = "torch",
        precision: str | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.meta = checkpoint.meta
        self.device = device
        self.amp = amp and device.type == "cuda"
        if isinstance(engine, str):
            engine = make_engine(engine, checkpoint, device, amp=amp, precision=precision)
        self.engine = engine
        self.model = checkpoint.model
        norm = self.meta.normalization
        # batches are normalised where the engine runs: on a GPU only uint8 pixels cross the bus
        self.mean = torch.tensor(norm.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(norm.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoseg-infer")

    @property
    def n_classes(self) -> int:
        return len(self.meta.classes)

    def prepare(self, batch: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        """(N, C, h, w) raw pixels + (N, h, w) validity → normalised, padded float tensor.

        Invalid pixels are set to the band means (zero after normalisation) so nodata does not
        look like dark imagery to the model.
        """
        x = self._to_device(batch).float()
        x = (x - self.mean) / self.std
        x = x * self._to_device(valid)[:, None].float()
        h, w = x.shape[-2:]
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x

    def _to_device(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
        """Probabilities (N, K, h, w) as float16 for a prepared batch, and the seconds the model ran
        (excluding time spent waiting for another task's forward pass)."""
        return self._inference.submit(self._forward, x, out_hw).result()

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, out_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        logits = self.engine.run(x)
        probs = torch.softmax(logits[:, :, : out_hw[0], : out_hw[1]].float(), dim=1)
        if probs.device.type != "cpu":
            probs = probs.to(torch.float16)  # half the bytes back over the bus
        out = offheap_empty(tuple(probs.shape), np.float16)  # outlives this pass: kept off the heap
        torch.from_numpy(out).copy_(probs)
        return out, time.perf_counter() - t0

    def predict(self, batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return self.predict_timed(batch, valid)[0]

    def predict_timed(self, batch: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
        """Like ``predict``, also returning the model's own run time in seconds."""
        return self.forward(self.prepare(batch, valid), batch.shape[-2:])


@lru_cache(maxsize=4)
def get_predictor(
    checkpoint_path: str,
    device: str = "auto",
    torch_threads: int = 0,
    engine: EngineName = "auto",
    amp: bool = True,
    precision: str | None = None,
) -> Predictor | OpenVinoPredictor:
    """The worker-process-wide predictor for a checkpoint, engine and precision (loaded once per process):
    on the CPU with a cached OpenVINO conversion the torch-free ``OpenVinoPredictor``, else ``Predictor``.

    ``amp``: float16 autocast where the model runs on a CUDA device and no ``precision`` is given.
    """
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    dev = resolve_device(device)
    if dev.type == "cpu":
        converted = predictor_for(checkpoint_path, "cpu", torch.get_num_threads(), engine, precision)
        if converted is not None:
            return converted
    checkpoint = load_checkpoint(checkpoint_path, device=dev)
    return Predictor(checkpoint, dev, amp=amp, engine=engine, precision=precision)


_load_lock = threading.Lock()


def shared_predictor(
    checkpoint_path: str | os.PathLike[str],
    device: str = "auto",
    torch_threads: int = 0,
    engine: EngineName = "auto",
    amp: bool = True,
    precision: str | None = None,
) -> Predictor | OpenVinoPredictor:
    """Thread-safe access to ``get_predictor`` (two tasks must not load the same model twice)."""
    with _load_lock:
        return get_predictor(str(checkpoint_path), device, torch_threads, engine, amp, precision)


def predict_image(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    image: np.ndarray,
    valid: np.ndarray,
    n_classes: int,
    tile: int,
    overlap: int,
    batch: int,
    blend: str = "cosine",
) -> tuple[np.ndarray, np.ndarray]:
    """Blended class probabilities (K, H, W) of an in-memory (C, H, W) image, tile by tile.

    ``predict`` maps raw (N, C, h, w) pixels and (N, h, w) validity to (N, K, h, w) probabilities
    (``Predictor.predict``). Nodata-only tiles are skipped; returns the probabilities and the
    (H, W) mask of pixels some predicted tile covered.
    """
    h, w = valid.shape
    grid = TileGrid(h, w, tile, overlap)
    acc = BlockAccumulator(Window(0, 0, h, w), n_classes)
    todo = [i for i, win in enumerate(grid) if valid[win.slices()].any()]
    for start in range(0, len(todo), batch):
        wins = [grid[i] for i in todo[start : start + batch]]
        data = np.stack([image[(slice(None), *win.slices())] for win in wins])
        probs = predict(data, np.stack([valid[win.slices()] for win in wins]))
        for win, p in zip(wins, probs, strict=True):
            acc.add(win, p.astype(np.float32), blend_weights(win, h, w, grid.overlap, kind=blend))
    return acc.result(fill=0.0), acc.covered
