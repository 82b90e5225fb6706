"""Building change between two building runs: footprints matched one-to-one by IoU."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from pyproj import Transformer

from geoseg.outputs.gpkg import write_layer
from geoseg.outputs.styles import outline_polygon_qml
from geoseg.outputs.vectorize import area_m2

MATCH_IOU = 0.3  # a footprint pair overlapping at least this much is the same building
CHANGED_IOU = 0.6  # a matched pair below this (extended, shrunk, rebuilt) is a changed building
LAYER = "buildings"


def _footprints(run, crs) -> gpd.GeoDataFrame:
    if run.gpkg is None:
        from geoseg.change.errors import ChangeInputError

        raise ChangeInputError(f"{run.folder}: incomplete run folder (no building GeoPackage)")
    df = pyogrio.read_dataframe(run.gpkg, layer=LAYER, columns=["id"])
    df = df.to_crs(crs) if df.crs is not None else df.set_crs(crs)
    return df


def _masked(points: np.ndarray, mask: Path | None, crs) -> np.ndarray:
    """True where a mask raster is nonzero at ``points`` (shapely points in ``crs``)."""
    if mask is None or len(points) == 0:
        return np.zeros(len(points), bool)
    with rasterio.open(mask) as src:
        tr = Transformer.from_crs(crs, src.crs, always_xy=True)
        xs, ys = tr.transform(shapely.get_x(points), shapely.get_y(points))
        inside = np.array([src.index(x, y) for x, y in zip(xs, ys, strict=True)])
        r, c = inside[:, 0], inside[:, 1]
        ok = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        vals = np.zeros(len(points), np.float64)
        vals[ok] = [v[0] for v in src.sample(zip(np.asarray(xs)[ok], np.asarray(ys)[ok], strict=True))]
    return vals != 0


def match(b: gpd.GeoDataFrame, a: gpd.GeoDataFrame) -> list[tuple[int, int, float]]:
    """One-to-one pairs (row in b, row in a, IoU) with IoU >= MATCH_IOU, best pairs first (greedy)."""
    gb, ga = b.geometry.to_numpy(), a.geometry.to_numpy()
    if len(gb) == 0 or len(ga) == 0:
        return []
    ib, ia = shapely.STRtree(ga).query(gb, predicate="intersects")
    inter = shapely.area(shapely.intersection(gb[ib], ga[ia]))
    union = shapely.area(gb[ib]) + shapely.area(ga[ia]) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    order = np.argsort(-iou, kind="stable")
    used_b, used_a, pairs = set(), set(), []
    for k in order.tolist():
        if iou[k] < MATCH_IOU:
            break
        i, j = int(ib[k]), int(ia[k])
        if i in used_b or j in used_a:
            continue
        used_b.add(i)
        used_a.add(j)
        pairs.append((i, j, float(iou[k])))
    return pairs


# the building change layers and their outline colours
BUILDING_LAYERS = {"buildings_new": "#2F9E44", "buildings_removed": "#E03131", "buildings_changed": "#F59F00"}


def match_buildings(before, after, target, cfg, gpkg: Path) -> tuple[dict[str, int], dict]:
    """Write ``buildings_new``, ``buildings_removed`` and ``buildings_changed`` to ``gpkg``.

    Only footprints whose centroid lies where both dates were imaged (the two rasters' overlap, outside
    the masks) take part.
    """
    crs = target.crs.to_wkt()
    area = target.extent & before.geobox.extent.to_crs(target.crs) & after.geobox.extent.to_crs(target.crs)
    frames = []
    for run in (before, after):
        df = _footprints(run, crs)
        cent = shapely.centroid(df.geometry.to_numpy())
        keep = shapely.contains_xy(area.geom, shapely.get_x(cent), shapely.get_y(cent))
        for mask in (cfg.before_mask, cfg.after_mask):
            keep &= ~_masked(cent, mask, crs)
        df = df[keep].reset_index(drop=True)
        df["area_m2"] = area_m2(df.geometry)
        frames.append(df)
    b, a = frames
    pairs = match(b, a)
    mb = {i for i, _, _ in pairs}
    ma = {j for _, j, _ in pairs}
    db, da = before.date.isoformat(), after.date.isoformat()
    removed = b.loc[[i for i in range(len(b)) if i not in mb]]
    new = a.loc[[j for j in range(len(a)) if j not in ma]]
    changed = [(i, j, iou) for i, j, iou in pairs if iou < CHANGED_IOU]
    layers = {
        "buildings_new": gpd.GeoDataFrame(
            {
                "id_after": new["id"].to_numpy(np.int64),
                "area_after_m2": new["area_m2"].to_numpy(),
                "date_after": da,
            },
            geometry=new.geometry.to_numpy(),
            crs=crs,
        ),
        "buildings_removed": gpd.GeoDataFrame(
            {
                "id_before": removed["id"].to_numpy(np.int64),
                "area_before_m2": removed["area_m2"].to_numpy(),
                "date_before": db,
            },
            geometry=removed.geometry.to_numpy(),
            crs=crs,
        ),
        "buildings_changed": gpd.GeoDataFrame(
            {
                "id_before": np.array([b["id"].iat[i] for i, _, _ in changed], np.int64),
                "id_after": np.array([a["id"].iat[j] for _, j, _ in changed], np.int64),
                "area_before_m2": np.array([b["area_m2"].iat[i] for i, _, _ in changed], np.float64),
                "area_after_m2": np.array([a["area_m2"].iat[j] for _, j, _ in changed], np.float64),
                "iou": np.array([iou for _, _, iou in changed], np.float64),
                "date_before": db,
                "date_after": da,
            },
            geometry=np.array([a.geometry.iat[j] for _, j, _ in changed], dtype=object)
            if changed
            else np.empty(0, dtype=object),
            crs=crs,
        ),
    }
    colors = BUILDING_LAYERS
    for name, frame in layers.items():
        write_layer(frame, gpkg, name, style_qml=outline_polygon_qml(colors[name]), style_name=name)
    counts = {
        "new": len(new),
        "removed": len(removed),
        "changed": len(changed),
        "unchanged": len(pairs) - len(changed),
        "before": len(b),
        "after": len(a),
    }
    return counts, {"building_match_iou": MATCH_IOU, "building_changed_below_iou": CHANGED_IOU}
