"""Scene discovery (folder glob with dated file names, or a local STAC file), the area of interest,
per-date validity masks, and the AOI clip every date is run on.

Clipping: each date is cut to the AOI's bounding window on the scene's own grid (no resampling), and every
pixel outside the AOI polygon, outside the scene's valid data, or masked (cloud) is marked invalid in an
internal GDAL mask. The run reads only that file and skips invalid pixels, so nothing outside the AOI is
computed (tiles wholly outside it are skipped as nodata-only; the pixels outside the polygon inside a
partially covered tile are classified as nodata).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
import rasterio.windows
import shapely
from rasterio.errors import RasterioError

from geoseg.errors import SceneError
from geoseg.io.staging import atomic_path
from geoseg.monitor.config import AOIConfig, MasksConfig, MonitorWorkflowError, ScenesConfig


class SceneSkipped(Exception):
    """A scene that is fine but has nothing to monitor: no overlap with the AOI, or fully cloudy."""


@dataclass(frozen=True)
class SceneRef:
    """A discovered scene: its key in the state file, path, acquisition date, and file identity."""

    key: str
    path: Path
    date: dt.date | None
    size: int
    mtime_ns: int
    problem: str | None = None  # why it cannot be used at all (no date, missing asset)

    @property
    def identity(self) -> list[int]:
        return [self.size, self.mtime_ns]


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def discover(cfg: ScenesConfig) -> list[SceneRef]:
    """Every scene the source currently offers, sorted by date then key."""
    refs = _discover_folder(cfg) if cfg.folder is not None else _discover_stac(cfg)
    return sorted(refs, key=lambda r: (r.date or dt.date.max, r.key))


def _discover_folder(cfg: ScenesConfig) -> list[SceneRef]:
    assert cfg.folder is not None
    rx = re.compile(cfg.date_regex)
    refs = []
    for path in sorted(p for p in cfg.folder.glob(cfg.glob) if p.is_file()):
        key = path.relative_to(cfg.folder).as_posix()
        size, mtime = _stat(path)
        matches = list(rx.finditer(path.name))
        date, problem = None, None
        if not matches:
            problem = f"no date matching {cfg.date_regex!r} in the file name"
        else:
            try:
                date = dt.datetime.strptime(matches[-1].group(1), cfg.date_format).date()
            except ValueError:
                problem = f"{matches[-1].group(1)!r} is not a date in format {cfg.date_format!r}"
        refs.append(SceneRef(key, path, date, size, mtime, problem))
    return refs


def _discover_stac(cfg: ScenesConfig) -> list[SceneRef]:
    import pystac

    assert cfg.stac is not None and cfg.asset is not None
    try:
        kind = json.loads(cfg.stac.read_text()).get("type")
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_file(str(cfg.stac)))
        else:
            items = list(pystac.Catalog.from_file(str(cfg.stac)).get_items(recursive=True))
    except Exception as exc:  # noqa: BLE001 - any unreadable catalog is a workflow error
        raise MonitorWorkflowError(f"{cfg.stac}: cannot read the STAC file ({exc})") from None
    refs = []
    for item in items:
        stamp = item.datetime or item.common_metadata.start_datetime
        date = stamp.date() if stamp else None
        asset = item.assets.get(cfg.asset)
        if asset is None:
            refs.append(SceneRef(item.id, cfg.stac, date, -1, -1, f"STAC item has no asset {cfg.asset!r}"))
            continue
        href = asset.get_absolute_href() or asset.href
        if "://" in href and not href.startswith("file://"):
            refs.append(SceneRef(item.id, cfg.stac, date, -1, -1, f"asset {href} is not a local file"))
            continue
        path = Path(href.removeprefix("file://"))
        size, mtime = _stat(path)
        problem = None if date else "STAC item has no datetime"
        refs.append(SceneRef(item.id, path, date, size, mtime, problem))
    return refs


# ------------------------------------------------------------------------------------------------ AOI


@dataclass(frozen=True)
class AOI:
    geometry: shapely.Geometry
    crs: rasterio.crs.CRS

    def in_crs(self, crs) -> shapely.Geometry:
        if rasterio.crs.CRS.from_user_input(crs) == self.crs:
            return self.geometry
        geo = rasterio.warp.transform_geom(self.crs, crs, shapely.geometry.mapping(self.geometry))
        return shapely.geometry.shape(geo)


def load_aoi(cfg: AOIConfig) -> AOI:
    if cfg.bbox is not None:
        return AOI(shapely.box(*cfg.bbox), rasterio.crs.CRS.from_user_input(cfg.crs or "EPSG:4326"))
    import geopandas as gpd

    try:
        frame = gpd.read_file(cfg.file, layer=cfg.layer)
    except Exception as exc:  # noqa: BLE001
        raise MonitorWorkflowError(f"{cfg.file}: aoi.file cannot be read ({exc})") from None
    if frame.crs is None or frame.empty:
        raise MonitorWorkflowError(f"{cfg.file}: aoi.file has no CRS or no features")
    geom = shapely.make_valid(frame.geometry.union_all())
    if geom.is_empty or geom.area <= 0:
        raise MonitorWorkflowError(f"{cfg.file}: aoi.file has no polygon area")
    return AOI(geom, rasterio.crs.CRS.from_user_input(frame.crs.to_wkt()))


# ---------------------------------------------------------------------------------------------- masks


def _series_band(series: Path, date: dt.date) -> int | None:
    with rasterio.open(series) as src:
        for i, desc in enumerate(src.descriptions, start=1):
            if desc and desc[:10] == date.isoformat():
                return i
    return None


def _invalid_mask(
    cfg: MasksConfig, ref: SceneRef, shape: tuple[int, int], transform, crs
) -> tuple[np.ndarray | None, str | None]:
    """Invalid (cloudy) pixels of ``ref`` on the clip grid, and the mask's description."""
    assert ref.date is not None
    if cfg.series is not None:
        path, band = cfg.series, _series_band(cfg.series, ref.date)
        if band is None:
            if cfg.required:
                raise SceneError(f"{cfg.series}: no mask band dated {ref.date.isoformat()}")
            return None, None
    else:
        assert cfg.template is not None
        path = Path(cfg.template.format(stem=ref.path.stem, date=ref.date.strftime("%Y%m%d")))
        band = 1
        if not path.is_file():
            if cfg.required:
                raise SceneError(f"{path}: mask file missing")
            return None, None
    values = np.full(shape, np.nan, np.float32)
    try:
        with rasterio.open(path) as src:
            rasterio.warp.reproject(
                rasterio.band(src, band),
                values,
                dst_transform=transform,
                dst_crs=crs,
                dst_nodata=np.nan,
                resampling=rasterio.warp.Resampling.nearest,
            )
    except RasterioError as exc:
        raise SceneError(f"{path}: cannot read the mask ({exc})") from None
    return np.isin(values, np.asarray(cfg.invalid_values, np.float32)), f"{path.name} band {band}"


# ----------------------------------------------------------------------------------------------- clip


@dataclass(frozen=True)
class Clip:
    path: Path
    clear_fraction: float  # of the AOI's valid scene pixels
    aoi_pixels: int
    valid_pixels: int
    mask: str | None


def clip_scene(
    ref: SceneRef,
    aoi: AOI,
    dest: Path,
    band_names: list[str] | None,
    masks: MasksConfig | None,
    min_clear_fraction: float,
) -> Clip:
    """Write ``dest``: the scene cut to the AOI window, invalid outside the AOI / data / mask.

    Raises ``SceneError`` (unreadable scene or mask) or ``SceneSkipped`` (no overlap, fully cloudy).
    """
    try:
        with rasterio.open(ref.path) as src:
            if src.crs is None or src.transform.is_identity:
                raise SceneError(f"{ref.path}: raster has no CRS or geotransform (not georeferenced)")
            if band_names is not None and len(band_names) != src.count:
                raise SceneError(
                    f"{ref.path}: scene has {src.count} band(s) but the workflow names {len(band_names)}"
                )
            geom = aoi.in_crs(src.crs)
            full = shapely.box(*src.bounds)
            if not geom.intersects(full) or geom.intersection(full).area <= 0:
                raise SceneSkipped("no overlap with the AOI")
            win = rasterio.windows.from_bounds(*geom.intersection(full).bounds, transform=src.transform)
            r0, c0 = max(0, int(np.floor(win.row_off))), max(0, int(np.floor(win.col_off)))
            r1 = min(src.height, int(np.ceil(win.row_off + win.height)))
            c1 = min(src.width, int(np.ceil(win.col_off + win.width)))
            if r1 <= r0 or c1 <= c0:
                raise SceneSkipped("no overlap with the AOI")
            window = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
            transform = src.window_transform(window)
            data = src.read(window=window)
            valid = src.dataset_mask(window=window) > 0
            profile = src.profile
            descriptions = band_names or list(src.descriptions)
            crs = src.crs
    except RasterioError as exc:
        raise SceneError(f"{ref.path}: not a raster GDAL can read ({str(exc).splitlines()[0]})") from None
    shape = data.shape[1:]
    inside = rasterio.features.geometry_mask([geom], shape, transform, invert=True)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    aoi_valid = inside & valid
    if not aoi_valid.any():
        raise SceneSkipped("no valid pixels inside the AOI")
    clear = aoi_valid
    mask_desc = None
    if masks is not None:
        invalid, mask_desc = _invalid_mask(masks, ref, shape, transform, crs)
        if invalid is not None:
            clear = aoi_valid & ~invalid
    fraction = float(clear.sum()) / float(aoi_valid.sum())
    if fraction < min_clear_fraction:
        raise SceneSkipped(
            f"fully cloudy: {fraction:.1%} of the AOI clear (< {min_clear_fraction:.0%}; mask {mask_desc})"
        )
    fill = profile.get("nodata")
    data[:, ~clear] = 0 if fill is None or not np.isfinite(fill) else fill
    out = {
        "driver": "GTiff",
        "width": shape[1],
        "height": shape[0],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": None,  # the internal mask decides validity
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **out) as dst:
            dst.write(data)
            dst.write_mask(clear.astype(np.uint8) * 255)
            for i, name in enumerate(descriptions, start=1):
                if name:
                    dst.set_band_description(i, name)
            dst.update_tags(ACQUISITIONDATE=ref.date.isoformat() if ref.date else "", SOURCE=str(ref.path))
    return Clip(dest, fraction, int(inside.sum()), int(clear.sum()), mask_desc)
