"""Run configuration: one pydantic model that CLI flags and workflow files both map onto."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from geoseg.errors import GeosegError
from geoseg.inference.precision import Precision

DEFAULT_LANDCOVER_MODEL = Path(__file__).parent / "checkpoints" / "landcover_rgb.pt"
DEFAULT_BUILDINGS_MODEL = Path(__file__).parent / "checkpoints" / "buildings_rgb.pt"
# geoseg run's minimum mapping unit (m²): about 3 x 3 pixels of the bundled 0.3 m models, which resolve
# nothing smaller (without it 54 % of the demo scene's polygons were under 1 m²)
DEFAULT_MMU_M2 = 1.0


class ClusterConfig(BaseModel):
    """Where tasks run: an embedded LocalCluster (default) or an existing scheduler."""

    model_config = ConfigDict(extra="forbid")

    scheduler: str | None = Field(
        None, description="address of an existing Dask scheduler, e.g. tcp://host:8786"
    )
    workers: int | None = Field(None, ge=1, description="LocalCluster workers (default: 1)")
    processes: bool = Field(
        True,
        description="LocalCluster workers in their own processes; False runs them in the command's process "
        "(faster start, no results pickled, but its single malloc arena keeps what the run held: peak "
        "memory grows with the scene)",
    )
    threads_per_worker: int = Field(
        2, ge=1, description="Dask threads per worker (reads overlap with compute)"
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch threads per worker (default: cores / workers)"
    )
    allocator_tuning: bool = Field(
        True,
        description="set glibc malloc env on worker processes (avoids page-fault storms); in-process "
        "workers use the command's own (geoseg run --in-process sets it)",
    )

    def resolved_workers(self) -> int:
        return self.workers or 1

    def resolved_torch_threads(self) -> int:
        if self.torch_threads:
            return self.torch_threads
        return max(1, (os.cpu_count() or 1) // self.resolved_workers())


class RunConfig(BaseModel):
    """Parameters of ``geoseg run``."""

    model_config = ConfigDict(extra="forbid")

    scene: Path
    out: Path
    model: Path = DEFAULT_LANDCOVER_MODEL  # a checkpoint, or baseline:landcover / baseline:buildings
    models: list[Path] = Field(
        default_factory=list,
        description="two or more models (one per task) run from one read of each tile (overrides model)",
    )
    tile: int = Field(512, ge=32, description="tile size in model-grid pixels (multiple of 32)")
    overlap: int | None = Field(None, ge=0, description="tile overlap in pixels (default: the model's)")
    batch: int = Field(8, ge=1, description="tiles per model forward pass")
    block: int = Field(1024, ge=256, description="output block size in scene pixels (multiple of 512)")
    blend: Literal["cosine", "linear", "constant"] = "cosine"
    bands: list[int] | None = Field(None, description="1-based band indexes to feed the model")
    band_names: list[str] | None = Field(
        None,
        description="the role of each scene band (e.g. swir1,nir,red,green) where it has no descriptions"
        " (matched to the model's band names)",
    )
    resample: bool = Field(True, description="resample scenes whose GSD differs from the model's")
    device: str = "auto"
    amp: bool = Field(True, description="float16 autocast on CUDA devices (no effect on the CPU)")
    engine: Literal["auto", "torch", "onnx", "openvino"] = Field(
        "auto",
        description="inference engine: auto (openvino on CPU workers where installed, else torch), torch, "
        "onnx (ONNX Runtime) or openvino",
    )
    precision: Precision | None = Field(
        None,
        description="inference precision: f32, bf16, fp16 or auto (the fastest the hardware runs natively); "
        "default f32 on CPU engines, float16 autocast on CUDA (see geoseg.inference.precision)",
    )
    overwrite: bool = False
    progress: bool = True
    cluster: ClusterConfig = ClusterConfig()
    date: datetime.date | None = Field(
        None, description="acquisition date (default: the scene's metadata tags, else its file name)"
    )
    date_pattern: str | None = Field(
        None, description="regex finding the date in the file name (named groups year, month, day)"
    )
    mmu_m2: float = Field(
        DEFAULT_MMU_M2,
        ge=0,
        description="minimum mapping unit in m²: smaller regions merge into their surroundings (0: off)",
    )
    confidence: bool = Field(
        False, description="also write confidence.tif (uint8: winning-class probability x 255)"
    )

    @field_validator("tile")
    @classmethod
    def _tile_multiple(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"tile must be a multiple of 32, got {v}")
        return v

    @field_validator("date_pattern")
    @classmethod
    def _pattern_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            import re

            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return v

    @field_validator("block")
    @classmethod
    def _block_multiple(cls, v: int) -> int:
        if v % 512:
            raise ValueError(f"block must be a multiple of 512, got {v}")
        return v

    @model_validator(mode="after")
    def _overlap_below_half_tile(self) -> RunConfig:
        if self.overlap is not None:
            check_overlap(self.overlap, self.tile)
        return self

    @model_validator(mode="after")
    def _precision_the_engine_runs(self) -> RunConfig:
        if self.engine == "onnx" and self.precision in ("bf16", "fp16"):
            raise ValueError(f"the onnx engine runs f32 only, not {self.precision}; use openvino or torch")
        return self


def check_overlap(overlap: int, tile: int) -> None:
    if overlap * 2 >= tile:
        raise ValueError(f"overlap ({overlap}) must be less than half the tile ({tile})")


def read_yaml_mapping(path: Path, error: type[GeosegError], expected: str) -> dict[str, Any]:
    """The mapping at the top of YAML file ``path``; ``error`` (one line naming the file) if it is missing,
    not YAML, or not a mapping (``expected`` says what it should hold)."""
    import yaml

    if not path.is_file():
        raise error(f"{path}: no such workflow file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping with {expected}")
    return raw
