"""Parameters of ``geoseg change``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from geoseg.config import ClusterConfig

# Minimum mapping unit of change (m²): changed regions (4-connected pixels of one from->to transition)
# smaller than this are reported as no change. 100 m² = 4 pixels of 5 m imagery, a small house at 0.3 m.
DEFAULT_CHANGE_MMU_M2 = 100.0


class ChangeConfig(BaseModel):
    """Parameters of ``geoseg change BEFORE AFTER --out DIR``."""

    model_config = ConfigDict(extra="forbid")

    before: Path = Field(description="finished run folder (run.json) or a scene to run first")
    after: Path = Field(description="finished run folder (run.json) or a scene to run first")
    out: Path
    grid: Literal["finer", "before", "after"] = Field(
        "finer", description="grid of the comparison: the finer of the two (default), or one date's"
    )
    mmu_m2: float = Field(
        DEFAULT_CHANGE_MMU_M2, ge=0, description="minimum mapping unit of change regions in m²"
    )
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="ignore change where either date's confidence is below this (0-1)"
    )
    before_mask: Path | None = Field(
        None, description="raster: nonzero pixels of the before date are excluded"
    )
    after_mask: Path | None = Field(None, description="raster: nonzero pixels of the after date are excluded")
    class_map: dict[str, str] | None = Field(
        None,
        description="AFTER class name -> BEFORE class name, to compare runs of different models or class "
        "schemes (classes of the same name map to each other by default; every AFTER class must map)",
    )
    overwrite: bool = False
    progress: bool = True
    # only used when BEFORE/AFTER are scenes: how to run them
    model: Path | None = Field(None, description="checkpoint for scenes given as BEFORE/AFTER")
    bands: list[int] | None = Field(None, description="1-based bands of scenes given as BEFORE/AFTER")
    resample: bool = True
    block: int = Field(1024, ge=256, description="comparison block size in pixels")
    cluster: ClusterConfig = Field(
        default_factory=lambda: ClusterConfig(processes=False),
        description="where the block tasks run: an existing scheduler, or an embedded cluster (by default "
        "one worker in this process: the tasks read and compare two class rasters, no model)",
    )
