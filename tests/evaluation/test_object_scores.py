"""SpaceNet object scores: hand-checked boxes, conventions, and agreement with a brute-force matching."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import shapely.affinity
from shapely import box

from geoseg.evaluation.metrics import object_scores
from tests.conftest import ATLANTA_BUILDINGS, KAMPALA_BUILDINGS


def test_hand_checked_boxes():
    truth = [box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10)]
    pred = [
        box(0, 0, 10, 5),  # IoU 50/100 = 0.5 exactly with truth 0: a match at min_iou 0.5
        box(25, 0, 35, 10),  # IoU 50/150 = 1/3 with truth 1: no match
        box(100, 100, 101, 101),  # overlaps nothing
    ]  # truth 2 has no prediction
    s = object_scores(pred, truth)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 2)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(1 / 3) and s["mean_iou_matched"] == pytest.approx(0.5)
    # the threshold is inclusive: just above 0.5 the half box no longer matches, at 1/3 the shifted one does
    assert object_scores(pred, truth, min_iou=0.5 + 1e-9)["tp"] == 0
    s = object_scores(pred, truth, min_iou=1 / 3)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["mean_iou_matched"] == pytest.approx((0.5 + 1 / 3) / 2)


def test_matching_is_one_to_one_by_best_iou():
    truth = [box(0, 0, 10, 10)]
    pred = [box(0, 0, 10, 8), box(0, 0, 10, 9)]  # IoU 0.8 and 0.9 with the same truth
    s = object_scores(pred, truth)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 1, 0)
    assert s["mean_iou_matched"] == pytest.approx(0.9)
    # one prediction covering two buildings matches at most one of them
    s = object_scores([box(0, 0, 21, 10)], [box(0, 0, 10, 10), box(11, 0, 21, 10)], min_iou=0.4)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 1)


def test_empty_inputs_have_no_nan():
    one = [box(0, 0, 1, 1)]
    assert object_scores([], []) == {
        "tp": 0, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "mean_iou_matched": 0.0,
    }  # fmt: skip
    s = object_scores([], one)
    assert (s["fn"], s["precision"], s["recall"], s["f1"]) == (1, 0.0, 0.0, 0.0)
    s = object_scores(one, [])
    assert (s["fp"], s["precision"], s["recall"], s["f1"]) == (1, 0.0, 0.0, 0.0)
    # missing and empty geometries are ignored; an invalid (self-crossing) one is repaired with buffer(0)
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    s = object_scores([None, shapely.Polygon(), bowtie], [box(0, 0, 1, 1)], min_iou=0.0)
    assert s["tp"] + s["fp"] == 1


def test_geoseries_inputs_and_crs_check():
    truth = gpd.read_file(ATLANTA_BUILDINGS)
    s = object_scores(truth, truth.geometry)  # a GeoDataFrame counts as its geometry
    assert (s["tp"], s["fp"], s["fn"], s["f1"]) == (43, 0, 0, 1.0)
    with pytest.raises(ValueError, match="different CRSs"):
        object_scores(truth.geometry.to_crs(4326), truth.geometry)


def _perturbed(truth: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Real outlines shifted by 0-60% of their size (IoU on both sides of 0.5), some dropped, some doubled,
    plus false alarms."""
    geoms = []
    for i, g in enumerate(truth.geometry):
        if i % 7 == 3:
            continue  # missed
        size = np.sqrt(g.area)
        dx, dy = rng.uniform(0, 0.6) * size, rng.uniform(-0.2, 0.2) * size
        geoms.append(shapely.affinity.translate(g, dx, dy))
        if i % 11 == 5:
            geoms.append(shapely.affinity.scale(g, 0.8, 0.8))  # a second prediction on one building
    x0, y0, x1, y1 = truth.total_bounds
    for _ in range(5):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        geoms.append(box(x, y, x + 8, y + 6))
    return gpd.GeoDataFrame(geometry=geoms, crs=truth.crs)


def _brute_force_counts(pred: list, truth: list, min_iou: float) -> tuple[int, int, int]:
    """SpaceNet's rule written out the slow way: every pair's IoU, then pairs taken greedily by best IoU,
    each polygon at most once."""
    pred = [g.buffer(0) for g in pred if g is not None and not g.is_empty]
    truth = [g.buffer(0) for g in truth if g is not None and not g.is_empty]
    pairs = []
    for i, p in enumerate(pred):
        for j, t in enumerate(truth):
            union = p.union(t).area
            iou = p.intersection(t).area / union if union > 0 else 0.0
            if iou >= min_iou and iou > 0:
                pairs.append((iou, i, j))
    used_p, used_t = set(), set()
    for _, i, j in sorted(pairs, reverse=True):
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    tp = len(used_p)
    return tp, len(pred) - tp, len(truth) - tp


@pytest.mark.parametrize(
    ("labels", "min_iou"), [(KAMPALA_BUILDINGS, 0.5), (KAMPALA_BUILDINGS, 0.3), (ATLANTA_BUILDINGS, 0.5)]
)
def test_agrees_with_a_brute_force_matching(labels, min_iou):
    truth = gpd.read_file(labels)
    pred = _perturbed(truth, np.random.default_rng(0))
    s = object_scores(pred.geometry, truth.geometry, min_iou=min_iou)
    tp, fp, fn = _brute_force_counts(list(pred.geometry), list(truth.geometry), min_iou)
    assert (s["tp"], s["fp"], s["fn"]) == (tp, fp, fn)
    assert s["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert 0.2 < s["f1"] < 0.9  # the perturbation leaves a real mix of matches and misses
