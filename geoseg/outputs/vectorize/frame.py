"""Polygons -> a GeoDataFrame with ground areas (m²), exact where the CRS is not equal-area."""

from __future__ import annotations

from collections.abc import Iterable

import geopandas as gpd
import numpy as np
import pyproj
import shapely
from pyproj.crs import ProjectedCRS
from pyproj.crs.coordinate_operation import LambertAzimuthalEqualAreaConversion

from geoseg.errors import OutputError

# Planar areas are used when the CRS's areal scale factor is within this of 1 over the data (UTM: <= 0.08%).
MAX_AREAL_SCALE_ERROR = 1e-3
# Geometries wider than this use exact reprojected areas; narrower ones a local areal scale (error < 1e-5).
EXACT_AREA_SPAN_M = 20_000.0


# ---------------------------------------------------------------------------------------------- frame


def _local_equal_area(crs: pyproj.CRS, lon: float, lat: float) -> pyproj.CRS:
    return ProjectedCRS(
        conversion=LambertAzimuthalEqualAreaConversion(lat, lon), geodetic_crs=crs.geodetic_crs
    )


def _areal_scale(crs: pyproj.CRS, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Planar area (CRS units²) per true ground m² at the points (xs, ys).

    The Jacobian of CRS -> (longitude, latitude) by central differences through PROJ, times the
    ellipsoid's area element M·N·cos(latitude): exact for the transformation PROJ actually applies
    (``get_factors`` treats Web Mercator as if it were conformal on the ellipsoid, 0.67 % off).
    """
    to_geo = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    h = 1.0 / crs.axis_info[0].unit_conversion_factor if crs.is_projected else 1e-5  # ~1 m
    px = np.concatenate((xs + h, xs - h, xs, xs))
    py = np.concatenate((ys, ys, ys + h, ys - h))
    lon, lat = (np.radians(v).reshape(4, -1) for v in to_geo.transform(px, py))
    dlon = np.unwrap(lon, axis=0)
    jac = (dlon[0] - dlon[1]) * (lat[2] - lat[3]) - (dlon[2] - dlon[3]) * (lat[0] - lat[1])
    phi = lat.mean(axis=0)
    ell = crs.ellipsoid
    if ell is None:  # every CRS geoseg writes has a datum
        raise OutputError(f"{crs.name}: no ellipsoid, so no ground areas")
    e2 = 1 - (ell.semi_minor_metre / ell.semi_major_metre) ** 2
    w2 = 1 - e2 * np.sin(phi) ** 2
    m, n = ell.semi_major_metre * (1 - e2) / w2**1.5, ell.semi_major_metre / np.sqrt(w2)
    ground = np.abs(jac) / (4 * h * h) * m * n * np.cos(phi)  # m² per CRS unit²
    return np.where(ground > 0, 1 / np.where(ground > 0, ground, 1), np.inf)


def area_m2(geoms: gpd.GeoSeries) -> np.ndarray:
    """True ground area of each geometry in square metres.

    In a projected CRS whose areal scale (``_areal_scale`` at the centre and corners of the data) stays
    within 0.1 % of 1 -- UTM, equal-area projections -- the planar area is used, converted from the CRS's
    linear unit. Otherwise (geographic CRS, Web Mercator, ...) each geometry's planar area is divided by the
    areal scale at its centroid: exact where the scale varies linearly across the geometry, otherwise off by
    about (width / earth radius)², so geometries wider than ``EXACT_AREA_SPAN_M`` are densified and
    reprojected to a Lambert azimuthal equal-area CRS centred on the data (same datum) instead.
    """
    if len(geoms) == 0:
        return np.zeros(0, np.float64)
    if geoms.crs is None:
        raise OutputError("cannot compute areas in square metres without a CRS")
    crs = geoms.crs
    arr = geoms.to_numpy()
    planar = shapely.area(arr)
    if crs.geodetic_crs is None:  # engineering / local CRS: nothing better than planar
        return planar * crs.axis_info[0].unit_conversion_factor ** 2
    left, bottom, right, top = geoms.total_bounds
    unit = crs.axis_info[0].unit_conversion_factor if crs.is_projected else 1.0
    if crs.is_projected:
        xs = np.array([(left + right) / 2, left, right, left, right])
        ys = np.array([(bottom + top) / 2, bottom, bottom, top, top])
        scale = _areal_scale(crs, xs, ys) / unit**2
        if np.all(np.abs(scale - 1) <= MAX_AREAL_SCALE_ERROR):
            return planar * unit**2
    area = np.zeros(len(arr), np.float64)
    has_area = planar > 0
    centroid = shapely.centroid(arr[has_area])
    area[has_area] = planar[has_area] / _areal_scale(crs, shapely.get_x(centroid), shapely.get_y(centroid))
    # geometries too wide for one scale factor (an upper bound of their ground width decides)
    gb = shapely.bounds(arr)
    metres_per_unit = unit if crs.is_projected else 111_320.0
    wide = np.hypot(gb[:, 2] - gb[:, 0], gb[:, 3] - gb[:, 1]) * metres_per_unit > EXACT_AREA_SPAN_M
    if wide.any():
        to_geo = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        lon, lat = to_geo.transform((left + right) / 2, (bottom + top) / 2)
        laea = _local_equal_area(crs, float(lon), float(lat))
        # straight edges in the CRS are curves in the equal-area one: densify them first
        step = np.hypot(gb[wide, 2] - gb[wide, 0], gb[wide, 3] - gb[wide, 1]) / 1000
        dense = shapely.segmentize(arr[wide], max_segment_length=step)
        area[wide] = gpd.GeoSeries(dense, crs=crs).to_crs(laea).area.to_numpy()
    return area


def polygons_to_frame(
    polys: Iterable[tuple[shapely.Geometry, int]],
    class_names: dict[int, str],
    crs: object,
    value_field: str = "class_id",
) -> gpd.GeoDataFrame:
    """GeoDataFrame with ``value_field`` (int32), class_name and area_m2 (see ``area_m2``).

    The geometries are taken as they are: the tracer's and the seam merge's polygons are valid by
    construction (tests/outputs/test_vectorize.py), and checking 68,000 of them costs seconds per scene.
    """
    polys = list(polys)
    geoms = np.array([g for g, _ in polys], dtype=object) if polys else np.empty(0, dtype=object)
    values = np.array([v for _, v in polys], dtype=np.int64)
    if len(values) and (values.min() < np.iinfo(np.int32).min or values.max() > np.iinfo(np.int32).max):
        raise OutputError(f"{value_field} values do not fit a 32-bit integer column")
    values = values.astype(np.int32)
    series = gpd.GeoSeries(geoms, crs=pyproj.CRS.from_user_input(crs))
    uniq, index = np.unique(values, return_inverse=True)
    names = np.array([class_names.get(int(v), str(int(v))) for v in uniq], dtype=object)
    return gpd.GeoDataFrame(
        {
            value_field: values,
            "class_name": names[index],
            "area_m2": area_m2(series).astype(np.float64),
        },
        geometry=series,
        crs=series.crs,
    )
