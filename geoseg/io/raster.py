"""Scene access: open and validate a GeoTIFF, describe it as a GeoBox, read windows inside tasks."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window as RioWindow

from geoseg.errors import SceneError
from tiles import Window

EARTH_METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Scene:
    """What geoseg knows about an input scene without reading its pixels."""

    path: Path
    geobox: GeoBox
    count: int
    dtype: str
    nodata: float | None
    band_names: tuple[str | None, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.geobox.shape.y), int(self.geobox.shape.x)

    @property
    def gsd_m(self) -> float:
        """Ground sample distance in metres (mean of x and y; degrees converted at the scene centre)."""
        res = self.geobox.resolution
        crs = self.geobox.crs
        if crs.geographic:
            lat = self.geobox.geographic_extent.centroid.coords[0][1]
            gx = abs(res.x) * EARTH_METRES_PER_DEGREE * math.cos(math.radians(lat))
            return (gx + abs(res.y) * EARTH_METRES_PER_DEGREE) / 2
        units = crs.units[0] if crs.units else "metre"
        factor = 0.3048 if "foot" in units or units in ("ft", "us-ft") else 1.0
        return (abs(res.x) + abs(res.y)) / 2 * factor


def open_scene(path: str | os.PathLike[str]) -> Scene:
    """Open ``path`` and check it is a georeferenced raster; raise ``SceneError`` otherwise."""
    path = Path(path)
    if not path.exists():
        raise SceneError(f"{path}: no such file")
    if path.is_dir():
        raise SceneError(f"{path}: is a directory, not a raster")
    try:
        with warnings.catch_warnings():
            # geoseg reports missing georeferencing itself, as an error.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            if src.crs is None:
                raise SceneError(f"{path}: raster has no CRS (not georeferenced)")
            if src.transform.is_identity:
                raise SceneError(f"{path}: raster has no geotransform (not georeferenced)")
            if not src.transform.is_rectilinear:
                raise SceneError(f"{path}: rotated geotransforms are not supported")
            dtypes = set(src.dtypes)
            if len(dtypes) != 1:
                raise SceneError(f"{path}: bands have mixed data types {sorted(dtypes)}")
            return Scene(
                path=path.resolve(),
                geobox=GeoBox.from_rio(src),
                count=src.count,
                dtype=src.dtypes[0],
                nodata=src.nodata,
                band_names=tuple(src.descriptions),
            )
    except RasterioIOError as exc:
        reason = str(exc).split(":")[-1].strip() or "unreadable"
        raise SceneError(f"{path}: not a raster GDAL can read ({reason})") from None


def window_to_rio(window: Window) -> RioWindow:
    return RioWindow(window.col_off, window.row_off, window.width, window.height)


def read_window(
    path: str | os.PathLike[str],
    window: Window,
    bands: list[int],
    work_geobox: GeoBox | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``bands`` and the validity mask for ``window``.

    With ``work_geobox`` the window is on that (resampled) grid and pixels are averaged from the
    scene through a warped VRT; otherwise the window is on the scene's own grid.
    Returns (data (C, h, w), valid (h, w) bool).
    """
    rio_window = window_to_rio(window)
    with rasterio.open(path) as src:
        if work_geobox is None:
            data = src.read(bands, window=rio_window)
            valid = _valid_mask(src, rio_window)
        else:
            with WarpedVRT(
                src,
                crs=src.crs,
                transform=work_geobox.affine,
                width=work_geobox.shape.x,
                height=work_geobox.shape.y,
                resampling=Resampling.average,
            ) as vrt:
                data = vrt.read(bands, window=rio_window)
                valid = _valid_mask(vrt, rio_window)
    return data, valid


def read_valid_mask(path: str | os.PathLike[str], window: Window) -> np.ndarray:
    """Validity mask of ``window`` on the scene grid (nodata, alpha or internal masks)."""
    with rasterio.open(path) as src:
        return _valid_mask(src, window_to_rio(window))


def _valid_mask(src, window: RioWindow) -> np.ndarray:
    """GDAL's dataset mask: a pixel is nodata only where every band is nodata (or alpha/mask says so)."""
    return src.dataset_mask(window=window) > 0
