"""Model registry and checkpoint format (torch is imported only for what needs it)."""

from __future__ import annotations

import importlib
from typing import Any

from geoseg.models.meta import CheckpointMeta, ClassInfo

_LAZY = {
    "ARCHITECTURES": "geoseg.models.registry",
    "build_model": "geoseg.models.registry",
    "Checkpoint": "geoseg.models.checkpoint",
    "load_checkpoint": "geoseg.models.checkpoint",
    "save_checkpoint": "geoseg.models.checkpoint",
}

__all__ = ["CheckpointMeta", "ClassInfo", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
