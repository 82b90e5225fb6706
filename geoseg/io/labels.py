"""Training labels on an image's grid: polygons rasterized, label rasters reprojected.

Labels become a (H, W) uint8 array of 0-based class indexes into the model's class list, with
``IGNORE_INDEX`` where nothing is known. Every problem is a ``LabelError`` naming the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from pyproj.exceptions import CRSError
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.features import rasterize
from rasterio.warp import reproject
from shapely.geometry import box

from geoseg.errors import LabelError
from geoseg.io.chips import IGNORE_INDEX
from geoseg.io.raster import crs_of

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".parquet")


def pair_labels(images: list[Path], labels: list[Path]) -> list[tuple[Path, Path]]:
    """(image, label file) pairs: one label file per image, or a single one shared by all images."""
    return list(zip(images, labels if len(labels) == len(images) else labels * len(images), strict=True))


def is_vector(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VECTOR_SUFFIXES


def read_labels(
    path: str | os.PathLike[str],
    geobox: GeoBox,
    classes: Sequence[str],
    class_field: str | None = None,
    background: str | None = None,
) -> np.ndarray:
    """Labels of ``path`` (polygons or a raster) as class indexes on ``geobox``.

    ``classes`` are the class names in model order. Polygon labels name their class in
    ``class_field`` (a class name, or a 1-based class id); without it every polygon is the one
    class that is not ``background``. Pixels no polygon covers are ``background`` when given,
    otherwise ignored. Raster labels hold 1-based class ids; 0 and nodata are ignored.
    """
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{path}: no such label file")
    if is_vector(path):
        return rasterize_polygons(path, geobox, classes, class_field, background)
    return read_label_raster(path, geobox, classes)


def _class_index(values: np.ndarray, classes: Sequence[str], path: Path, field: str) -> np.ndarray:
    """Map names or 1-based ids in ``values`` to 0-based indexes; unknown values are an error."""
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    out = np.empty(len(values), np.int64)
    unknown = set()
    for k, v in enumerate(values):
        if isinstance(v, str) and v.strip().lower() in by_name:
            out[k] = by_name[v.strip().lower()]
            continue
        try:
            as_int = int(v)
        except (TypeError, ValueError):
            as_int = -1
        if 1 <= as_int <= len(classes) and float(v) == as_int:
            out[k] = as_int - 1
        else:
            unknown.add(str(v))
    if unknown:
        raise LabelError(
            f"{path}: unknown class value(s) {sorted(unknown)[:5]} in field '{field}'; "
            f"expected one of {list(classes)} or ids 1-{len(classes)}"
        )
    return out


def rasterize_polygons(
    path: Path,
    geobox: GeoBox,
    classes: Sequence[str],
    class_field: str | None,
    background: str | None,
) -> np.ndarray:
    """Burn polygons onto ``geobox`` (reprojected to its CRS); smaller polygons win where they overlap."""
    try:
        frame = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise LabelError(f"{path}: not a vector file GDAL can read ({type(exc).__name__})") from None
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise LabelError(f"{path}: label file has no features")
    if frame.crs is None:
        raise LabelError(f"{path}: labels have no CRS, so they cannot be placed on the image")
    polys = frame[frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    if polys.empty:
        raise LabelError(f"{path}: no polygon features (found {sorted(set(frame.geom_type))})")
    try:
        polys = polys.to_crs(crs_of(geobox).to_wkt())
    except (CRSError, ValueError) as exc:
        raise LabelError(f"{path}: cannot reproject labels to the image CRS ({exc})") from None
    if not np.isfinite(polys.total_bounds).all():
        raise LabelError(f"{path}: labels do not reproject to finite coordinates in the image CRS")
    extent = box(*geobox.extent.boundingbox)
    invalid = ~polys.geometry.is_valid  # self-intersecting outlines: repaired, GEOS cannot clip them
    if invalid.any():
        polys = polys.set_geometry(polys.geometry.where(~invalid, polys.geometry[invalid].make_valid()))
    polys = polys[polys.intersects(extent)]
    if polys.empty:
        raise LabelError(f"{path}: no label polygon overlaps the image extent")

    foreground = [i for i, c in enumerate(classes) if c != background]
    if class_field is None:
        if len(foreground) != 1:
            raise LabelError(
                f"{path}: labels for {len(foreground)} classes need a class field (--class-field)"
            )
        index = np.full(len(polys), foreground[0])
    else:
        if class_field not in polys.columns:
            raise LabelError(
                f"{path}: no field '{class_field}' (fields: {[c for c in polys.columns if c != 'geometry']})"
            )
        values = polys[class_field]
        named = values.notna() & (values.astype(str).str.strip() != "")
        polys = polys[named]  # polygons without a class are unlabelled, not an error
        if polys.empty:
            raise LabelError(f"{path}: no polygon has a value in field '{class_field}'")
        index = _class_index(polys[class_field].to_numpy(), classes, path, class_field)

    fill = classes.index(background) if background is not None else IGNORE_INDEX
    order = np.argsort(-polys.geometry.area.to_numpy(), kind="stable")
    shapes = ((polys.geometry.iloc[k], int(index[k])) for k in order)
    return rasterize(
        shapes,
        out_shape=(int(geobox.shape.y), int(geobox.shape.x)),
        transform=geobox.affine,
        fill=fill,
        dtype="uint8",
    )


def read_label_raster(path: Path, geobox: GeoBox, classes: Sequence[str]) -> np.ndarray:
    """Class ids (1-based) of a label raster, reprojected (nearest) onto ``geobox`` when grids differ."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioIOError:
        raise LabelError(f"{path}: not a raster or vector label file GDAL can read") from None
    with src:
        if src.crs is None:
            raise LabelError(f"{path}: label raster has no CRS")
        if src.count != 1:
            raise LabelError(f"{path}: label raster must have one band, found {src.count}")
        nodata = src.nodata
        src_box = box(*rasterio.warp.transform_bounds(src.crs, crs_of(geobox).to_wkt(), *src.bounds))
        if not src_box.intersects(box(*geobox.extent.boundingbox)):
            raise LabelError(f"{path}: label raster does not overlap the image extent")
        same_grid = (
            src.crs == rasterio.crs.CRS.from_wkt(crs_of(geobox).to_wkt())
            and src.transform.almost_equals(geobox.affine)
            and src.shape == (int(geobox.shape.y), int(geobox.shape.x))
        )
        raw = src.read(1)
        unknown = ~np.isfinite(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
        if nodata is not None:
            unknown |= raw == nodata
        if not np.array_equal(raw[~unknown], np.round(raw[~unknown])):
            raise LabelError(f"{path}: label raster must hold integer class ids, found fractional values")
        ids = np.where(unknown, -1, raw).astype(np.int32)
        if same_grid:
            values = ids
        else:
            values = np.full((int(geobox.shape.y), int(geobox.shape.x)), -1, np.int32)
            reproject(
                ids,
                values,
                src_transform=src.transform,
                src_crs=src.crs,
                src_nodata=-1,
                dst_transform=geobox.affine,
                dst_crs=crs_of(geobox).to_wkt(),
                dst_nodata=-1,
                resampling=Resampling.nearest,
            )
    ignore = values <= 0
    bad = np.unique(values[~ignore & (values > len(classes))])
    if bad.size:
        raise LabelError(
            f"{path}: unknown class id(s) {bad[:5].tolist()}; expected 1-{len(classes)} ({list(classes)})"
        )
    out = np.where(ignore, IGNORE_INDEX, values - 1).astype(np.uint8)
    if (out == IGNORE_INDEX).all():
        raise LabelError(f"{path}: label raster has no labelled pixels on the image")
    return out
