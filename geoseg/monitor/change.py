"""The change step between two dates' run folders: ``geoseg change`` (``geoseg.change.run_change``)."""

from __future__ import annotations

import json
from pathlib import Path

CHANGE_GPKG = "change.gpkg"
CHANGE_JSON = "change.json"
CHANGE_LAYER = "landcover_change"


def compute_change(before: Path, after: Path, out: Path, mmu_m2: float, grid: str) -> None:
    """Write the change folder ``out`` comparing run folders ``before`` and ``after`` (replacing ``out``).

    Invalid pixels (outside the AOI, nodata, cloud) are nodata in both class rasters already, so no
    per-date masks are passed: ``geoseg change`` compares only pixels valid on both dates.
    """
    from geoseg.change import ChangeConfig, run_change

    cfg = ChangeConfig(
        before=before, after=after, out=out, grid=grid, mmu_m2=mmu_m2, overwrite=True, progress=False
    )
    run_change(cfg, notify=lambda m: None)


def class_names(tif: Path) -> dict[int, str]:
    """Class id -> name of a geoseg class raster (its CLASS_NAMES tag)."""
    import rasterio

    with rasterio.open(tif) as src:
        raw = src.tags().get("CLASS_NAMES")
    return {int(k): v for k, v in json.loads(raw).items()} if raw else {}
