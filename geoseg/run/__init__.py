"""Running a scene: plan and Dask graph (``graph``, ``multirun``), the cluster and its memory settings
(``cluster``, ``allocator``, ``worker_startup``), checks before anything starts (``preflight``), the output
lock, per-block resume, and the run itself (``job``: scene -> staged, verified outputs -> run folder).

Importing this package is cheap: ``run_scene`` loads ``geoseg.run.job`` when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"RunSummary": "geoseg.run.job", "run_scene": "geoseg.run.job"}

__all__ = ["RunSummary", "run_scene"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
