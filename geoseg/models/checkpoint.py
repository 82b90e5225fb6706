"""One-file checkpoint: fp16 weights plus the metadata needed to run the model correctly.

Loaded with ``torch.load(weights_only=True)``: only tensors and plain Python values, never pickled objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from geoseg.errors import CheckpointError
from geoseg.io.staging import atomic_path
from geoseg.models.meta import (  # noqa: F401 - re-exported
    FORMAT,
    FORMAT_VERSION,
    CheckpointMeta,
    ClassInfo,
    Normalization,
    file_sha256,
    validate_payload,
)
from geoseg.models.registry import build_model


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, its metadata and the file's SHA-256.

    ``model`` is ``None`` where an engine runs a converted copy and the torch model was not built.
    """

    model: torch.nn.Module | None
    meta: CheckpointMeta
    sha256: str
    path: Path


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
    return validate_payload(path, payload), payload["state_dict"]


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint and build its model in eval mode, float32 on ``device``."""
    path = Path(path)
    meta, state = read_checkpoint_meta(path)
    model = build_model(meta.arch, meta.encoder, meta.in_channels, len(meta.classes), **meta.arch_kwargs)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc).strip())
        raise CheckpointError(
            f"{path}: weights do not fit its architecture {meta.arch}/{meta.encoder} ({detail[:200]})"
        ) from None
    model.eval().to(device)
    return Checkpoint(model=model, meta=meta, sha256=file_sha256(path), path=path)
