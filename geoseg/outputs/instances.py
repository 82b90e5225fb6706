"""Building instances from a per-pixel building mask: connected components, optional split of touching
buildings, and one polygon per instance.

Connectivity is 4 (edge neighbours) throughout, the same rule as ``rasterio.features.shapes`` and
``geoseg.outputs.vectorize``: two buildings that meet only at a pixel corner are two instances.

Splitting is conservative. The markers of the distance-transform watershed are the *h-maxima* of the
distance to the background: regional maxima that stand at least ``SPLIT_DEPTH_M`` above the saddle leading
to any higher maximum, i.e. separate "cores" joined by a neck at least ``2 * SPLIT_DEPTH_M`` narrower than
each core. Unlike ``peak_local_max``, the flat ridge of an elongated rectangle or the corner of an L-shaped
building is one maximum, so a single compact building is never split; two buildings joined along a full
shared wall (no neck) are not split either. A split is also undone when it would leave a piece smaller than
``min_area_m2`` or ``MIN_SPLIT_PIECE_M2``.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import watershed

# A core must rise this far (metres of distance to the background) above the neck joining it to another.
SPLIT_DEPTH_M = 1.5
# Each piece of a split must be at least this large (m²), whatever ``min_area_m2`` is.
MIN_SPLIT_PIECE_M2 = 9.0

_FOUR = ndimage.generate_binary_structure(2, 1)
_EIGHT = ndimage.generate_binary_structure(2, 2)


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.floating):
        return mask >= 0.5
    return mask != 0


def _split_component(comp: np.ndarray, gsd_m: float, min_piece_px: float) -> np.ndarray | None:
    """Watershed pieces (1..k) of one component (bool crop with a 1-pixel background border), or None."""
    dist = ndimage.distance_transform_edt(comp) * gsd_m  # metres to the nearest background pixel
    # Work in centimetres as integers: h-maxima on floats is sensitive to rounding noise on plateaus.
    dist_cm = np.round(dist * 100).astype(np.int32)
    # h-maxima as connected plateaus: the regional maxima of the reconstruction of (dist - h) under dist.
    # (skimage's h_maxima returns only the top pixels, which on a pixelated diagonal ridge are disconnected.)
    rec = reconstruction(dist_cm - int(round(SPLIT_DEPTH_M * 100)), dist_cm, method="dilation")
    cores = local_maxima(rec, connectivity=2, allow_borders=True) & comp
    markers, n = ndimage.label(cores, structure=_EIGHT)
    if n < 2:
        return None
    pieces = watershed(-dist_cm, markers, mask=comp)
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
    if sizes.min() < min_piece_px:
        return None
    return pieces


def label_instances(
    mask: np.ndarray, gsd_m: float, min_area_m2: float = 4.0, split_touching: bool = True
) -> np.ndarray:
    """Label building instances in a (H, W) mask (bool; floats are thresholded at 0.5, ints at != 0).

    4-connected components smaller than ``min_area_m2`` (at ``gsd_m`` metres per pixel) are dropped;
    with ``split_touching`` buildings joined by a neck are split by a distance-transform watershed (see
    the module docstring). Returns int32 ids 1..N numbered in raster order of their first pixel, 0 = none.
    """
    if not gsd_m or gsd_m <= 0 or not np.isfinite(gsd_m):
        raise ValueError(f"gsd_m must be a positive number of metres per pixel, got {gsd_m!r}")
    m = _as_mask(mask)
    px_area = gsd_m * gsd_m
    min_px = max(min_area_m2, 0.0) / px_area
    comps, n = ndimage.label(m, structure=_FOUR)
    out = np.zeros(m.shape, np.int32)
    if n == 0:
        return out
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    keep = sizes >= min_px
    keep[0] = False
    out[keep[comps]] = comps[keep[comps]]
    if split_touching:
        min_piece_px = max(min_px, MIN_SPLIT_PIECE_M2 / px_area)
        next_id = n + 1
        for k, sl in enumerate(ndimage.find_objects(comps), start=1):
            if sl is None or not keep[k] or sizes[k] < 2 * min_piece_px:
                continue
            # pad by one pixel so that the crop border counts as background for the distance transform
            comp = np.pad(comps[sl] == k, 1)
            pieces = _split_component(comp, gsd_m, min_piece_px)
            if pieces is None:
                continue
            pieces = pieces[1:-1, 1:-1]
            inside = pieces > 0
            view = out[sl]
            view[inside] = pieces[inside] + (next_id - 1)
            next_id += int(pieces.max())
    # renumber 1..N in raster order of each instance's first pixel
    ids, first = np.unique(out.ravel(), return_index=True)
    ids, first = ids[ids > 0], first[ids > 0]
    lut = np.zeros(int(out.max()) + 1, np.int32)
    lut[ids[np.argsort(first)]] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[out]


def instance_polygons(labels: np.ndarray, transform: Affine, crs) -> gpd.GeoDataFrame:
    """One valid (Multi)Polygon per instance id of ``labels`` (pixel -> CRS ``transform``).

    Columns: ``id`` (int), ``area_m2`` (planar ``geometry.area`` in CRS units², i.e. m² for a metric
    CRS), ``geometry``; rows sorted by id. Parts of one id (4-connected pieces) are unioned.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {labels.shape}")
    lab = labels.astype(np.int32, copy=False)
    parts: dict[int, list[shapely.Geometry]] = {}
    for geom, value in rasterio.features.shapes(lab, mask=lab > 0, connectivity=4, transform=transform):
        parts.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    ids = sorted(parts)
    geoms = []
    for i in ids:
        g = parts[i][0] if len(parts[i]) == 1 else shapely.union_all(parts[i])
        if not g.is_valid:
            g = shapely.make_valid(g)
        geoms.append(g)
    geometry = gpd.GeoSeries(geoms, crs=crs)
    return gpd.GeoDataFrame(
        {"id": np.asarray(ids, dtype=np.int64), "area_m2": np.asarray(geometry.area, dtype=np.float64)},
        geometry=geometry,
        crs=crs,
    )
