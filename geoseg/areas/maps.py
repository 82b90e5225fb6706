"""Categorical map rasters: open and check, class names from wherever a writer put them, pixel counts and
areas per class read in row strips (never the whole raster at once).

Works on any single-band integer class raster: ``landcover.tif`` of ``geoseg run`` (``CLASS_NAMES`` tag,
colour table), a change map of transition codes, or a raster from another tool.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from geoseg.errors import GeosegError

STRIP_PIXELS = 1 << 22  # pixels per strip (full raster width): bounds memory on any map size
MAX_CLASSES = 1000  # more distinct values than this: an id raster, not classes
READ_CACHE_MB = 64  # GDAL block cache while strips are read (its default is 5 % of RAM)


class MapError(GeosegError):
    """A map raster cannot be used as strata: missing, not categorical, not georeferenced."""


class SampleError(GeosegError):
    """A sample GeoPackage cannot be used: missing, unlabelled, unknown classes, another map or CRS."""


@dataclass
class ClassMap:
    """A categorical map raster: grid, nodata values, class names and colours (no pixels)."""

    path: Path
    width: int
    height: int
    transform: Affine
    crs: CRS
    dtype: str
    nodata: tuple[int, ...]
    names: dict[int, str]
    colors: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    block_rows: int = 1

    def name(self, value: int) -> str:
        return self.names.get(int(value), f"class {int(value)}")

    def strip_rows(self, rows: int | None = None) -> int:
        """Rows per strip: ``rows`` if given, else whole raster blocks up to ``STRIP_PIXELS``."""
        if rows is not None:
            return max(1, int(rows))
        n = max(1, STRIP_PIXELS // max(self.width, 1))
        if n >= self.block_rows:
            n -= n % self.block_rows
        return int(min(self.height, n))

    def strips(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, pixels)`` for full-width strips in raster order."""
        step = self.strip_rows(rows)
        with rasterio.Env(GDAL_CACHEMAX=READ_CACHE_MB), rasterio.open(self.path) as src:
            for r0 in range(0, self.height, step):
                h = min(step, self.height - r0)
                yield r0, src.read(1, window=Window(0, r0, self.width, h))

    def valid(self, pixels: np.ndarray) -> np.ndarray:
        ok = np.ones(pixels.shape, dtype=bool)
        for v in self.nodata:
            ok &= pixels != v
        return ok

    def row_areas_m2(self, r0: int, rows: int) -> np.ndarray:
        """Ground area of one pixel in each of ``rows`` rows from ``r0`` (constant in projected CRSs)."""
        return pixel_areas_m2(self.crs, self.transform, r0, rows, self.path)


def pixel_areas_m2(crs: CRS, transform: Affine, r0: int, rows: int, path: Path | str = "map") -> np.ndarray:
    """Pixel area in m² per row: |det| × unit² for projected CRSs, geodesic (WGS84 ellipsoid of the CRS)
    for geographic ones, where it changes with latitude."""
    if not crs.is_geographic:
        _, factor = crs.linear_units_factor
        return np.full(rows, abs(transform.determinant) * factor * factor)
    if transform.b or transform.d:
        raise MapError(f"{path}: rotated grids in a geographic CRS are not supported")
    from pyproj import CRS as PCRS
    from pyproj import Geod

    geod = PCRS.from_user_input(crs.to_wkt()).get_geod() or Geod(ellps="WGS84")
    x0, dx = transform.c, transform.a
    ys = transform.f + transform.e * np.arange(r0, r0 + rows + 1, dtype=np.float64)
    out = np.empty(rows)
    for i in range(rows):
        lat0, lat1 = ys[i], ys[i + 1]
        lons = [x0, x0 + dx, x0 + dx, x0]
        lats = [lat0, lat0, lat1, lat1]
        out[i] = abs(geod.polygon_area_perimeter(lons, lats)[0])
    return out


_PAIRS = re.compile(r"^\s*-?\d+\s*[=:]\s*[^,;]+(\s*[,;]\s*-?\d+\s*[=:]\s*[^,;]+)*\s*$")


def _names_from_value(value: str) -> dict[int, str] | None:
    """A ``{id: name}`` mapping from a tag value: JSON object, or ``1=forest,2=water`` pairs."""
    text = value.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        out = {}
        for k, v in obj.items():
            if isinstance(v, dict):  # e.g. {"12": {"name": "forest -> water", ...}}
                v = v.get("name") or v.get("title")
            if not isinstance(v, str):
                return None
            try:
                out[int(k)] = v
            except ValueError:
                return None
        return out or None
    if _PAIRS.match(text):
        out = {}
        for part in re.split(r"\s*[,;]\s*", text):
            k, v = re.split(r"\s*[=:]\s*", part, maxsplit=1)
            out[int(k)] = v.strip()
        return out
    return None


# tags looked at first, in this order; any other tag holding an id -> name mapping is used after them
_NAME_TAGS = ("CLASS_NAMES", "TRANSITION_NAMES", "CATEGORY_NAMES", "CLASSES", "CATEGORIES")


def names_from_tags(tags: Mapping[str, str]) -> dict[int, str]:
    """Class names from a raster's metadata tags (first mapping found, then ``CLASS_<id>`` tags)."""
    keys = [k for k in _NAME_TAGS if k in tags] + sorted(k for k in tags if k not in _NAME_TAGS)
    for key in keys:
        found = _names_from_value(str(tags[key]))
        if found:
            return found
    out = {}
    for k, v in tags.items():
        m = re.fullmatch(r"CLASS_(\d+)", k)
        if m:
            out[int(m.group(1))] = str(v)
    return out


def names_from_pam(path: Path) -> dict[int, str]:
    """Class names from a GDAL ``.aux.xml`` sidecar: raster attribute table (value + name columns) or
    category names (indexed by value)."""
    aux = path.with_name(path.name + ".aux.xml")
    if not aux.is_file():
        return {}
    try:
        band = ET.parse(aux).getroot().find("PAMRasterBand")
    except ET.ParseError:
        return {}
    if band is None:
        return {}
    rat = band.find("GDALRasterAttributeTable")
    if rat is not None:
        fields = {
            int(f.get("index", -1)): (f.findtext("Name") or "", f.findtext("Usage") or "")
            for f in rat.findall("FieldDefn")
        }
        vcol = next(
            (i for i, (n, u) in fields.items() if u in ("5", "0") and n.lower() in ("value", "id")), None
        )
        vcol = vcol if vcol is not None else next((i for i, (_, u) in fields.items() if u == "5"), None)
        ncol = next(
            (i for i, (n, u) in fields.items() if u == "2" or n.lower() in ("name", "class_name")), None
        )
        if vcol is not None and ncol is not None:
            out = {}
            for row in rat.findall("Row"):
                cells = [c.text or "" for c in row.findall("F")]
                try:
                    out[int(float(cells[vcol]))] = cells[ncol]
                except (ValueError, IndexError):
                    continue
            if out:
                return out
    cats = band.find("CategoryNames")
    if cats is not None:
        return {i: c.text for i, c in enumerate(cats.findall("Category")) if c.text}
    return {}


def open_class_map(
    path: str | os.PathLike[str],
    names: Mapping[int, str] | None = None,
    nodata: Sequence[int] | None = None,
) -> ClassMap:
    """Open a categorical map raster; ``names`` (id -> name) overrides what the file says, ``nodata``
    the values that are not classes (default: 0 and the raster's nodata value; ``[]``: none).

    Class names are looked up in the raster's tags (``CLASS_NAMES`` JSON of geoseg, any tag holding an
    id -> name mapping, ``CLASS_<id>`` tags), then in a GDAL ``.aux.xml`` sidecar (attribute table or
    category names); classes without a name are called ``class <id>``. Value 0 and the raster's nodata
    value are not classes.
    """
    path = Path(path)
    if not path.exists():
        raise MapError(f"{path}: no such file")
    if path.is_dir():
        raise MapError(f"{path}: is a directory, not a map raster")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioIOError as exc:
        raise MapError(f"{path}: not a readable raster ({str(exc).splitlines()[0]})") from None
    with src:
        if src.count != 1:
            raise MapError(f"{path}: a class map has one band, this raster has {src.count}")
        dtype = src.dtypes[0]
        if np.dtype(dtype).kind not in "iu":
            raise MapError(f"{path}: a class map holds integer class ids, this raster is {dtype}")
        if src.crs is None or src.transform.is_identity:
            raise MapError(f"{path}: raster is not georeferenced (no CRS or geotransform)")
        skip: set[int] = {0} if nodata is None else {int(v) for v in nodata}
        if nodata is None and src.nodata is not None:
            if not math.isnan(src.nodata) and float(src.nodata).is_integer():
                skip.add(int(src.nodata))
        found = names_from_tags(src.tags()) or names_from_pam(path)
        try:
            colors = {int(k): (int(v[0]), int(v[1]), int(v[2])) for k, v in src.colormap(1).items()}
        except ValueError:  # no colour table
            colors = {}
        cmap = ClassMap(
            path=path,
            width=src.width,
            height=src.height,
            transform=src.transform,
            crs=src.crs,
            dtype=dtype,
            nodata=tuple(sorted(skip)),
            names={k: v for k, v in found.items() if k not in skip},
            colors=colors,
            block_rows=int(src.block_shapes[0][0]),
        )
    if names:
        cmap.names.update({int(k): str(v) for k, v in names.items()})
    return cmap


@dataclass
class ClassCounts:
    """Pixels and ground area (m²) per class value of a map."""

    pixels: dict[int, int]
    area_m2: dict[int, float]

    @property
    def classes(self) -> list[int]:
        return sorted(k for k, v in self.pixels.items() if v > 0)

    @property
    def total_area_m2(self) -> float:
        return float(sum(self.area_m2.values()))


def class_pixels(strip: np.ndarray, cmap: ClassMap) -> dict[int, int]:
    """Pixels per class value in ``strip`` (nodata values left out)."""
    if strip.dtype in (np.uint8, np.uint16):
        c = np.bincount(strip.ravel(), minlength=1)
        found = {int(k): int(c[k]) for k in np.flatnonzero(c)}
    else:
        u, c = np.unique(strip, return_counts=True)
        found = dict(zip(u.tolist(), c.tolist(), strict=True))
    for v in cmap.nodata:
        found.pop(v, None)
    return found


def count_classes(cmap: ClassMap, rows: int | None = None) -> ClassCounts:
    """Count pixels and sum pixel areas per class, strip by strip."""
    pixels: dict[int, int] = {}
    area: dict[int, float] = {}
    constant = not cmap.crs.is_geographic
    px_area = float(cmap.row_areas_m2(0, 1)[0]) if constant else 0.0
    for r0, strip in cmap.strips(rows):
        if constant:
            found = class_pixels(strip, cmap)
            sums = {k: n * px_area for k, n in found.items()}
        else:
            ok = cmap.valid(strip)
            u, inv, c = np.unique(strip[ok], return_inverse=True, return_counts=True)
            row_area = np.broadcast_to(cmap.row_areas_m2(r0, strip.shape[0])[:, None], strip.shape)[ok]
            a = np.bincount(inv.ravel(), weights=row_area, minlength=len(u))
            found = dict(zip(u.tolist(), c.tolist(), strict=True))
            sums = dict(zip(u.tolist(), a.tolist(), strict=True))
        for k, n in found.items():
            pixels[k] = pixels.get(k, 0) + int(n)
            area[k] = area.get(k, 0.0) + float(sums[k])
        if len(pixels) > MAX_CLASSES:  # stop early: an id raster has millions
            raise MapError(
                f"{cmap.path}: over {MAX_CLASSES} distinct values, not a class map (building ids?)"
            )
    if not pixels:
        raise MapError(f"{cmap.path}: the map has no valid pixels (all 0 / nodata)")

    return ClassCounts(pixels=dict(sorted(pixels.items())), area_m2=dict(sorted(area.items())))
