"""Checkpoint metadata, read without torch (the Dask client only needs this, not the weights).

A checkpoint is a ``torch.save`` zip archive of ``{format, version, meta, state_dict}``; ``read_meta``
unpickles its ``data.pkl`` with tensors replaced by ``None`` (only plain values and the few names
torch's tensor records use are accepted), so checking a run's inputs does not import torch (~1.6 s).
"""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from geoseg.errors import CheckpointError
from geoseg.io.classes import hex_to_rgb

FORMAT = "geoseg-checkpoint"
FORMAT_VERSION = 1


class ClassInfo(BaseModel):
    """A class the model predicts: raster value, name and display colour."""

    id: int = Field(ge=1, le=254)
    name: str
    color: str = Field(pattern=r"^#[0-9A-Fa-f]{6}$")

    @property
    def rgb(self) -> tuple[int, int, int]:
        return hex_to_rgb(self.color)


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_payload(path: Path, payload: object) -> CheckpointMeta:
    """The metadata of a loaded checkpoint payload, or ``CheckpointError`` naming ``path``."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a geoseg checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')} is not supported")
    try:
        return CheckpointMeta.model_validate(payload["meta"])
    except ValidationError as exc:
        raise CheckpointError(f"{path}: invalid checkpoint metadata: {exc.errors()[0]['msg']}") from None


def _no_tensor(*args: Any, **kwargs: Any) -> None:
    return None


class _MetaUnpickler(pickle.Unpickler):
    """Plain values as they are; torch's storage records and tensor rebuilds become ``None``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module == "torch" and name.endswith("Storage")) or (module, name) in _TENSOR_REBUILDS:
            return _no_tensor
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")

    def persistent_load(self, pid: Any) -> None:
        return None


_TENSOR_REBUILDS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"),
}


def read_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Read and validate a checkpoint's metadata without torch (files that are not zip archives, such as
    torch's legacy format, are read with torch)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
            with zf.open(name) as f:
                payload = _MetaUnpickler(f).load()
    except (zipfile.BadZipFile, StopIteration):
        from geoseg.models.checkpoint import read_checkpoint_meta

        return read_checkpoint_meta(path)[0]
    except Exception as exc:  # damaged archive or an unexpected pickle
        raise CheckpointError(f"{path}: not a readable geoseg checkpoint ({type(exc).__name__})") from None
    return validate_payload(path, payload)
