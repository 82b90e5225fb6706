"""SpaceNet object scores: hand-checked boxes, conventions, and agreement with shared/tools/building_f1.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
import shapely.affinity
from shapely import box

from geoseg.metrics import object_scores

from .conftest import ATLANTA_BUILDINGS, KAMPALA_BUILDINGS

SHARED = Path(os.environ.get("GEOSEG_SHARED_DATA", "/work/shared/data"))
BUILDING_F1 = SHARED.parent / "tools" / "building_f1.py"


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


@pytest.mark.parametrize(
    ("labels", "min_iou"), [(KAMPALA_BUILDINGS, 0.5), (KAMPALA_BUILDINGS, 0.3), (ATLANTA_BUILDINGS, 0.5)]
)
def test_agrees_with_building_f1_tool(tmp_path, labels, min_iou):
    if not BUILDING_F1.exists():
        pytest.skip(f"{BUILDING_F1} not available")
    truth = gpd.read_file(labels)
    pred = _perturbed(truth, np.random.default_rng(0))
    gpkg = tmp_path / "pred.gpkg"
    pred.to_file(gpkg, layer="buildings", driver="GPKG")
    out = subprocess.run(
        [sys.executable, str(BUILDING_F1), f"{gpkg}:buildings", str(labels), str(min_iou)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    counts = dict(zip(out[0].split()[::2], out[0].split()[1::2], strict=True))
    s = object_scores(pred.geometry, truth.geometry, min_iou=min_iou)
    assert int(counts["pred"]) == s["tp"] + s["fp"] and int(counts["truth"]) == s["tp"] + s["fn"]
    assert int(counts["tp"]) == s["tp"]
    assert out[-1] == f"F1 {s['f1']:.3f}"
    assert 0.2 < s["f1"] < 0.9  # the perturbation leaves a real mix of matches and misses
