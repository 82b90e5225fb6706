"""The interface every product's output writer implements, and the finished block it receives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geoseg.outputs.vectorize import BlockPolygons
from tiles import Window

if TYPE_CHECKING:
    from geoseg.inference.task import BatchStats

__all__ = ["NODATA", "BlockResult", "Sink"]

NODATA = 0  # class value of nodata pixels in every class raster


@dataclass
class BlockResult:
    index: int
    labels: np.ndarray
    polygons: BlockPolygons
    stitch_s: float
    vectorize_s: float
    confidence: np.ndarray | None = None  # uint8: probability of the chosen class x 255
    batches: tuple[BatchStats, ...] = ()  # of the batches it used, in the plan's ``block_deps`` order


class Sink:
    """Where a product's finished blocks and polygons go: ``geoseg.outputs.landcover.LandcoverSink`` and
    ``geoseg.outputs.buildings.BuildingOutputs``."""

    wants_confidence = False
    polygons = 0
    layer = ""  # its GeoPackage layer
    keep_confidence: Path | None = None  # building sinks: keep the probabilities as this COG

    def add_block(self, block: Window, res: BlockResult) -> None: ...
    def blocks_done(self) -> None: ...  # the last block is in (the seam polygons come next)
    def add_polygons(self, polys: list) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...
    def assets(self) -> dict:  # STAC asset key -> (href, media type, roles, title)
        return {}
