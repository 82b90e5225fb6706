"""What a worker is given to run a model on a batch of tiles, and what it sends back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from geoseg.inference.engines import EngineName  # engines imports torch; workers may not

__all__ = ["BatchResult", "BatchStats", "ModelTask"]


@dataclass(frozen=True)
class ModelTask:
    """What a worker needs to find and run the model (paths are read by the worker itself)."""

    checkpoint: str
    device: str
    torch_threads: int
    class_ids: tuple[int, ...]
    engine: EngineName = "auto"
    amp: bool = True
    # geoseg.inference.precision: None is f32 on the CPU, fp16 autocast on CUDA (amp)
    precision: str | None = None

    def own_predictor(self) -> object | None:
        """A predictor that needs no checkpoint (``geoseg.inference.modelspec.BaselineTask``), else
        ``None``."""
        return None


@dataclass(frozen=True)
class BatchStats:
    read_s: float
    predict_s: float  # the model's forward passes only
    task_predict_s: float  # also preparing the batch and queueing for the worker's inference thread
    tiles: int
    predicted: int  # tiles with valid pixels (the others were skipped)
    finished_at: float  # time.time() on the worker
    engine: str = ""  # the engine that ran it (``auto`` resolved)
    precision: str = ""  # what that engine computed in, as it reports it
    cpu: str = ""  # the worker's CPU and relevant ISA flags (geoseg.inference.precision.cpu_label)


@dataclass
class BatchResult:
    probs: dict[int, np.ndarray | None]
    valid: dict[int, np.ndarray]  # each read tile's validity mask (bool), for the blocks' nodata
    stats: BatchStats
