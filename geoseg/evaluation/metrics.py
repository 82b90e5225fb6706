"""Segmentation metrics: per-pixel scores from a confusion matrix, and object (instance) scores."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import shapely

from geoseg.errors import LabelError

if TYPE_CHECKING:
    import geopandas as gpd


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, n_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """``cm[t, p]`` counts pixels of true class ``t`` predicted as ``p``; ``ignore_index`` is skipped."""
    valid = target != ignore_index
    t = target[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


class Scores(TypedDict):
    """``scores``: per-class arrays (in class order) and the two overall numbers."""

    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    miou: float
    accuracy: float


def scores(cm: np.ndarray) -> Scores:
    """Per-class IoU, precision, recall and F1 (NaN where a class is absent) plus mIoU and accuracy."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (tp + fp + fn)
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
    present = cm.sum(1) > 0
    return {
        "iou": iou,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "miou": float(np.nanmean(np.where(present, iou, np.nan))) if present.any() else float("nan"),
        "accuracy": float(tp.sum() / cm.sum()) if cm.sum() else float("nan"),
    }


def _geometries(geoms: Iterable[shapely.Geometry | None] | gpd.GeoSeries | gpd.GeoDataFrame) -> np.ndarray:
    """Non-empty geometries as an array; invalid ones repaired with ``buffer(0)`` (as SpaceNet does)."""
    geoms = getattr(geoms, "geometry", geoms)  # a GeoDataFrame counts as its geometry column
    arr = np.asarray([g for g in geoms if g is not None and not g.is_empty], dtype=object)
    if len(arr):
        bad = ~shapely.is_valid(arr)
        if bad.any():
            arr[bad] = shapely.buffer(arr[bad], 0)
    return arr


def object_scores(
    pred: Sequence[shapely.Geometry] | gpd.GeoSeries | gpd.GeoDataFrame,
    truth: Sequence[shapely.Geometry] | gpd.GeoSeries | gpd.GeoDataFrame,
    min_iou: float = 0.5,
) -> dict[str, float | int]:
    """SpaceNet object scores: one-to-one matching of predicted and true polygons (same CRS).

    Candidate pairs are those that overlap with IoU >= ``min_iou``; they are matched greedily by descending
    IoU (ties: later pred, then later truth first, as ``building_f1.py``), each polygon at most once. Empty
    and missing geometries are ignored. Returns ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1`` and
    ``mean_iou_matched``. No NaN: a ratio with a zero denominator is 0.0, except that empty truth *and* empty
    prediction give precision = recall = f1 = 1.0 (nothing to find, nothing wrongly found);
    ``mean_iou_matched`` is 0.0 without matches.
    """
    pc, tc = getattr(pred, "crs", None), getattr(truth, "crs", None)
    if pc is not None and tc is not None and not pc.equals(tc):
        raise LabelError(f"pred and truth are in different CRSs ({pc} vs {tc}); reproject one first")
    pg, tg = _geometries(pred), _geometries(truth)
    matched: list[float] = []
    if len(pg) and len(tg):
        i, j = shapely.STRtree(tg).query(pg, predicate="intersects")
        inter = shapely.area(shapely.intersection(pg[i], tg[j]))
        pos = inter > 0
        i, j, inter = i[pos], j[pos], inter[pos]
        iou = inter / shapely.area(shapely.union(pg[i], tg[j]))
        ok = iou >= min_iou
        i, j, iou = i[ok], j[ok], iou[ok]
        used_p: set[int] = set()
        used_t: set[int] = set()
        for k in np.lexsort((-j, -i, -iou)):
            a, b = int(i[k]), int(j[k])
            if a not in used_p and b not in used_t:
                used_p.add(a)
                used_t.add(b)
                matched.append(float(iou[k]))
    tp = len(matched)
    return object_counts_to_scores(tp, len(pg) - tp, len(tg) - tp) | {
        "mean_iou_matched": float(np.mean(matched)) if matched else 0.0
    }


def object_counts_to_scores(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    """Precision, recall and F1 from object counts (summed over scenes, or of one scene).

    A zero denominator gives 0.0, except that no truth and no prediction give 1.0 for all three.
    """
    if tp + fp + fn == 0:
        precision = recall = f1 = 1.0
    else:
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}
