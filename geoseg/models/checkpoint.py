"""One-file checkpoint: fp16 weights plus the metadata needed to run the model correctly.

Loaded with ``torch.load(weights_only=True)``: only tensors and plain Python values, never pickled objects.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, ValidationError

from geoseg.errors import CheckpointError
from geoseg.models.registry import build_model
from geoseg.rundir import atomic_path

FORMAT = "geoseg-checkpoint"
FORMAT_VERSION = 1


class ClassInfo(BaseModel):
    """A class the model predicts: raster value, name and display colour."""

    id: int = Field(ge=1, le=254)
    name: str
    color: str = Field(pattern=r"^#[0-9A-Fa-f]{6}$")

    @property
    def rgb(self) -> tuple[int, int, int]:
        c = self.color.lstrip("#")
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


class Normalization(BaseModel):
    """Per-band statistics in the input's own units: ``(x - mean) / std``."""

    mean: list[float]
    std: list[float]


class CheckpointMeta(BaseModel):
    """Everything geoseg needs to know to apply a model to a scene."""

    task: Literal["landcover", "buildings"]
    arch: str
    encoder: str
    arch_kwargs: dict[str, Any] = {}
    in_channels: int = Field(ge=1)
    bands: list[str]
    input_dtype: str
    value_range: tuple[float, float]
    normalization: Normalization
    classes: list[ClassInfo]
    tile_size: int = 512
    overlap: int = Field(
        64, ge=0, description="tile overlap that makes tiled output match whole-image output"
    )
    gsd_m: float | None = None
    gsd_tolerance: float = 2.0
    training_data_sha256: str = ""
    metrics: dict[str, float] = {}
    notes: str = ""

    def class_by_id(self) -> dict[int, ClassInfo]:
        return {c.id: c for c in self.classes}


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, its metadata and the file's SHA-256."""

    model: torch.nn.Module
    meta: CheckpointMeta
    sha256: str
    path: Path


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model: torch.nn.Module, meta: CheckpointMeta, path: str | os.PathLike[str]) -> Path:
    """Write weights (fp16) and metadata atomically to ``path``."""
    path = Path(path)
    state = {
        k: (v.detach().to("cpu").half() if v.is_floating_point() else v.detach().to("cpu"))
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "meta": meta.model_dump(mode="json"),
        "state_dict": state,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint_meta(path: str | os.PathLike[str]) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Read and validate a checkpoint file without building the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise CheckpointError(f"{path}: not a readable geoseg checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a geoseg checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')} is not supported")
    try:
        meta = CheckpointMeta.model_validate(payload["meta"])
    except ValidationError as exc:
        raise CheckpointError(f"{path}: invalid checkpoint metadata: {exc.errors()[0]['msg']}") from None
    return meta, payload["state_dict"]


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint and build its model in eval mode, float32 on ``device``."""
    path = Path(path)
    meta, state = read_checkpoint_meta(path)
    model = build_model(meta.arch, meta.encoder, meta.in_channels, len(meta.classes), **meta.arch_kwargs)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match {meta.arch}/{meta.encoder}: {exc}") from None
    model.eval().to(device)
    return Checkpoint(model=model, meta=meta, sha256=file_sha256(path), path=path)
