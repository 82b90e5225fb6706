"""Class raster -> polygons: trace each block (``trace``), merge polygons cut by block seams (``seams``),
and build the GeoDataFrame with ground areas (``frame``)."""

from geoseg.outputs.vectorize.frame import (
    EXACT_AREA_SPAN_M,
    MAX_AREAL_SCALE_ERROR,
    area_m2,
    polygons_to_frame,
)
from geoseg.outputs.vectorize.seams import MERGE_GROWTH, SeamMerger, merge_seams
from geoseg.outputs.vectorize.trace import BlockPolygons, Polys, vectorize_block, vectorize_window

__all__ = [
    "EXACT_AREA_SPAN_M",
    "MAX_AREAL_SCALE_ERROR",
    "MERGE_GROWTH",
    "BlockPolygons",
    "Polys",
    "SeamMerger",
    "area_m2",
    "merge_seams",
    "polygons_to_frame",
    "vectorize_block",
    "vectorize_window",
]
