"""One grid for two dates: the intersection of their footprints on the finer (or a chosen) date's grid,
and windowed reads of each date's rasters warped onto it (GDAL warped VRTs, nearest for classes/ids)."""

from __future__ import annotations

import math
import warnings
from contextlib import ExitStack

import geopandas as gpd
import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.errors import NodataShadowWarning
from rasterio.vrt import WarpedVRT

from geoseg.change.errors import ChangeInputError
from geoseg.io.raster import crs_of, window_to_rio
from geoseg.outputs.vectorize import area_m2
from tiles import Window


def pixel_size_m(gb: GeoBox) -> float:
    """Side of a pixel in metres (square root of the mean ground area of the grid's pixels)."""
    ext = gpd.GeoSeries([gb.extent.geom], crs=crs_of(gb).to_wkt())
    return math.sqrt(float(area_m2(ext)[0]) / (int(gb.shape.x) * int(gb.shape.y)))


def common_grid(
    before: GeoBox, after: GeoBox, which: str, names: tuple[str, str]
) -> tuple[GeoBox, float, str]:
    """(target grid, overlap of the two footprints in m², which date's grid it is)."""
    if which == "finer":
        which = "after" if pixel_size_m(after) < pixel_size_m(before) * (1 - 1e-6) else "before"
    ref, other = (before, after) if which == "before" else (after, before)
    ref_crs = crs_of(ref)
    inter = ref.extent & other.extent.to_crs(ref_crs)
    overlap = 0.0 if inter.is_empty else float(area_m2(gpd.GeoSeries([inter.geom], crs=ref_crs.to_wkt()))[0])
    if overlap <= 0:
        raise ChangeInputError(f"{names[1]} does not overlap {names[0]}")
    left, bottom, right, top = inter.boundingbox
    inv = ~ref.affine
    cols, rows = zip(
        *(inv @ (x, y) for x, y in ((left, top), (right, bottom), (left, bottom), (right, top))), strict=True
    )
    eps = 1e-6
    r0, r1 = max(0, math.floor(min(rows) + eps)), min(int(ref.shape.y), math.ceil(max(rows) - eps))
    c0, c1 = max(0, math.floor(min(cols) + eps)), min(int(ref.shape.x), math.ceil(max(cols) - eps))
    if r1 <= r0 or c1 <= c0:
        raise ChangeInputError(f"{names[1]} overlaps {names[0]} by less than a pixel")
    return ref[r0:r1, c0:c1], overlap, which


class Aligned:
    """Windowed reads of rasters on ``target`` (each opened once, through a warped VRT)."""

    def __init__(self, target: GeoBox) -> None:
        self.target = target
        self._stack = ExitStack()
        self._vrts: dict[tuple, WarpedVRT] = {}

    def __enter__(self) -> Aligned:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _vrt(self, path, resampling: Resampling, nodata: float | None) -> WarpedVRT:
        key = (str(path), resampling, nodata)
        if key not in self._vrts:
            src = self._stack.enter_context(rasterio.open(path))
            opts = (
                {}
                if nodata is None
                else {"nodata": nodata, "src_nodata": src.nodata if src.nodata is not None else nodata}
            )
            self._vrts[key] = self._stack.enter_context(
                WarpedVRT(
                    src,
                    crs=crs_of(self.target).to_wkt(),
                    transform=self.target.affine,
                    width=int(self.target.shape.x),
                    height=int(self.target.shape.y),
                    resampling=resampling,
                    warp_mem_limit=256,
                    **opts,
                )
            )
        return self._vrts[key]

    def read(
        self,
        path,
        window: Window,
        band: int = 1,
        resampling: Resampling = Resampling.nearest,
        fill: float = 0,
    ) -> np.ndarray:
        """Band ``band`` of ``path`` over ``window`` of the target grid (``fill`` outside the raster)."""
        return self._vrt(path, resampling, fill).read(band, window=window_to_rio(window))

    def read_valid(self, path, window: Window) -> np.ndarray:
        """Where ``path`` (a scene) has data over ``window`` (its nodata/mask; False outside it)."""
        vrt = self._vrt(path, Resampling.nearest, None)
        with warnings.catch_warnings():  # nodata shadowing an alpha band: the nodata is what counts
            warnings.simplefilter("ignore", NodataShadowWarning)
            return vrt.read_masks(1, window=window_to_rio(window)) > 0

    def read_gray(self, path, window: Window) -> np.ndarray:
        """Mean of a scene's first three bands (bilinear) over ``window``, float32."""
        vrt = self._vrt(path, Resampling.bilinear, None)
        n = min(3, vrt.count)
        return vrt.read(list(range(1, n + 1)), window=window_to_rio(window)).astype(np.float32).mean(0)
