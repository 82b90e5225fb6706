"""Scene access: open and validate a GeoTIFF, describe it as a GeoBox, read windows inside tasks."""

from __future__ import annotations

import itertools
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window as RioWindow

from geoseg.errors import SceneError
from tiles import Window

EARTH_METRES_PER_DEGREE = 111_320.0


def crs_of(geobox: GeoBox) -> CRS:
    """``geobox.crs``: every grid geoseg works on has one (``open_scene`` refuses rasters without)."""
    if geobox.crs is None:
        raise SceneError("a grid without a CRS (not georeferenced)")
    return geobox.crs


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
        crs = crs_of(self.geobox)
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


class _Handles(threading.local):
    """This thread's open datasets (rasterio handles are not thread-safe), keyed by file identity."""

    def __init__(self) -> None:
        self.open: OrderedDict[tuple, rasterio.io.DatasetReaderBase] = OrderedDict()


_handles = _Handles()
MAX_OPEN_PER_THREAD = 8


def _cached(key: tuple, opener: Callable[[], rasterio.io.DatasetReaderBase]):
    cache = _handles.open
    src = cache.get(key)
    if src is None or src.closed:
        src = cache[key] = opener()
        while len(cache) > MAX_OPEN_PER_THREAD:
            cache.popitem(last=False)[1].close()
    cache.move_to_end(key)
    return src


def _dataset(path: str | os.PathLike[str], work_geobox: GeoBox | None = None):
    """This thread's handle of ``path`` (or of its warped VRT onto ``work_geobox``), reopened when the file
    changes. Keeping it open saves the open per window and lets GDAL's block cache serve tile overlaps."""
    path = os.fspath(path)
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    src = _cached(key, lambda: rasterio.open(path))
    if work_geobox is None:
        return src
    return _cached(
        (*key, tuple(work_geobox.affine), tuple(work_geobox.shape)),
        lambda: WarpedVRT(
            src,
            crs=src.crs,
            transform=work_geobox.affine,
            width=work_geobox.shape.x,
            height=work_geobox.shape.y,
            resampling=Resampling.average,
        ),
    )


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
    src = _dataset(path, work_geobox)
    rio_window = window_to_rio(window)
    try:
        data = src.read(bands, window=rio_window)
        if work_geobox is None and sorted(bands) == list(range(1, src.count + 1)):
            valid = _valid_from_data(src, data)
            if valid is not None:
                return data, valid
        return data, _valid_mask(src, rio_window)
    except RasterioIOError as exc:
        error = _decode_error(path, window, exc, work_geobox is not None)
    raise error  # outside the handler: no GDAL exception chained (workers pickle the chain)


def read_valid_mask(path: str | os.PathLike[str], window: Window) -> np.ndarray:
    """Validity mask of ``window`` on the scene grid (nodata, alpha or internal masks)."""
    try:
        return _valid_mask(_dataset(path), window_to_rio(window))
    except RasterioIOError as exc:
        error = _decode_error(path, window, exc, False)
    raise error


def _decode_error(path, window: Window, exc: Exception, resampled: bool) -> SceneError:
    """One line naming the file and the window whose pixels GDAL could not read (raised outside the
    ``except`` block, so that the unpicklable GDAL exception is not its ``__context__``)."""
    inner = exc.__cause__ or exc.__context__  # rasterio's "Read failed" wraps GDAL's own message
    reason = " ".join(str(inner or exc).split())[:200] or type(exc).__name__
    grid = " of the resampled grid" if resampled else ""
    return SceneError(
        f"{path}: cannot read the pixels of window rows {window.row_off}-{window.row_stop}, "
        f"cols {window.col_off}-{window.col_stop}{grid} (corrupt or truncated data: {reason})"
    )


def _valid_mask(src, window: RioWindow) -> np.ndarray:
    """GDAL's dataset mask: a pixel is nodata only where every band is nodata (or alpha/mask says so)."""
    return src.dataset_mask(window=window) > 0


def _valid_from_data(src, data: np.ndarray) -> np.ndarray | None:
    """The dataset mask computed from all bands' pixels already read, where it is only a nodata value
    (or there is none); ``None`` where an alpha band or internal mask decides."""
    flags = set(itertools.chain.from_iterable(src.mask_flag_enums))
    if flags == {MaskFlags.all_valid}:
        return np.ones(data.shape[1:], bool)
    if flags != {MaskFlags.nodata} or src.nodata is None:
        return None
    if np.isnan(src.nodata):
        return ~np.isnan(data).all(axis=0)
    nodata = np.asarray(src.nodata).astype(data.dtype)
    if nodata != src.nodata:  # not representable in the band type: GDAL's own rounding rules decide
        return None
    return (data != nodata).any(axis=0)
