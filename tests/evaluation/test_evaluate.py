"""Scores against hand-checked confusion matrices, and ``geoseg evaluate`` on real labelled imagery."""

from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geoseg.errors import LabelError, ModelMismatchError
from geoseg.evaluation.evaluate import Segmenter, evaluate_chips, evaluate_scenes
from geoseg.evaluation.metrics import confusion_matrix, scores
from geoseg.inference.precision import cpu_label
from geoseg.io.labels import read_labels
from geoseg.io.raster import open_scene, read_window
from tests.conftest import (
    ATLANTA_BUILDINGS,
    ATLANTA_PAN,
    DUBAI,
    KAMPALA_BUILDINGS,
    LANDCOVER_MODEL,
    S2_LULC,
    S2_SCENE,
    few_chips,
)
from tiles import Window

QUIET = {"notify": lambda m: None}


def test_confusion_matrix_and_scores_by_hand():
    truth = np.array([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = confusion_matrix(pred, truth, 3)
    # rows = truth, columns = prediction; the 255 pixel is ignored.
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    s = scores(cm)
    # class 0: tp 1, fp 1, fn 1 -> IoU 1/3; class 1: tp 2, fp 1, fn 0 -> IoU 2/3; class 2: tp 2, fn 1 -> 2/3
    assert s["iou"] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert s["precision"] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert s["recall"] == pytest.approx([1 / 2, 1.0, 2 / 3])
    assert s["f1"] == pytest.approx([1 / 2, 4 / 5, 4 / 5])
    assert s["miou"] == pytest.approx(5 / 9)
    assert s["accuracy"] == pytest.approx(5 / 7)


def test_absent_class_does_not_count_in_miou():
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([0, 0, 0]), 3)
    s = scores(cm)
    assert cm.tolist() == [[2, 1, 0], [0, 0, 0], [0, 0, 0]]
    assert s["iou"][0] == pytest.approx(2 / 3) and s["iou"][1] == 0.0 and np.isnan(s["iou"][2])
    assert s["miou"] == pytest.approx(2 / 3)  # classes 1 and 2 have no truth pixels


def test_baseline_scores_equal_an_independent_count():
    seg = Segmenter("baseline:buildings")
    scene = open_scene(ATLANTA_PAN)
    left = scene.geobox[0:900, 0:450]
    bounds = tuple(left.extent.boundingbox)
    report = evaluate_scenes(seg, [(ATLANTA_PAN, ATLANTA_BUILDINGS)], bounds=bounds, **QUIET)

    image, valid = read_window(ATLANTA_PAN, Window(0, 0, 900, 450), [1])
    pred = seg.baseline.predict(image, valid, ["pan"], scene.gsd_m)
    truth = read_labels(ATLANTA_BUILDINGS, left, seg.classes, background="background")
    truth[~valid] = 255
    assert np.array_equal(report.confusion, confusion_matrix(pred, truth, 2))
    assert report.confusion.sum() == valid.sum()

    # Every true building in the left half is either matched or missed.
    polys = gpd.read_file(ATLANTA_BUILDINGS).clip(left.extent.boundingbox)
    polys = polys[polys.area >= 4.0]
    o = report.objects
    assert o["tp"] + o["fn"] == len(polys)
    assert 0 <= o["f1"] <= 1


def test_chip_evaluation_writes_json_matching_the_table(tmp_path):
    seg = Segmenter(str(LANDCOVER_MODEL), device="cpu")
    chips = few_chips(tmp_path / "dubai", per_tile=1)
    report = evaluate_chips(seg, chips, DUBAI / "classes.yaml", subfolder="tile_3", **QUIET)
    out = tmp_path / "scores.json"
    report.write(out)
    data = json.loads(out.read_text())
    assert data["confusion_matrix"]["classes"] == ["building", "land", "road", "vegetation", "water"]
    cm = np.array(data["confusion_matrix"]["counts"])
    assert cm.sum() == sum(c["pixels"] for c in data["classes"].values())
    assert data["miou"] == pytest.approx(scores(cm)["miou"], abs=1e-4)
    assert f"mIoU {data['miou']:.3f}" in report.table()
    assert len(data["inputs"]) == 1
    # scored in f32 (the default on the CPU), recorded with the CPU that computed it
    assert data["inference"] == {"engine": "torch", "precision": "f32", "cpu": cpu_label()}


def test_labels_with_classes_the_model_lacks_are_refused(tmp_path, kampala_crop):
    labels = tmp_path / "pools.gpkg"
    gpd.read_file(KAMPALA_BUILDINGS).assign(kind="swimming pool").to_file(labels, engine="pyogrio")
    seg = Segmenter(str(LANDCOVER_MODEL), device="cpu")
    with pytest.raises(LabelError, match="unknown class value"):
        evaluate_scenes(seg, [(kampala_crop, labels)], class_field="kind", **QUIET)


def test_a_model_of_another_band_count_is_refused(tmp_path):
    seg = Segmenter(str(LANDCOVER_MODEL), device="cpu")
    # the Sentinel-2 bands are named: red, green and blue are found (B04, B03, B02), its float32 is not uint8
    with pytest.raises(ModelMismatchError, match="float32"):
        evaluate_scenes(seg, [(S2_SCENE, S2_LULC)], class_field="LULC_NAME", **QUIET)
    bare = tmp_path / "s2_unnamed.tif"  # without band names, 13 bands are not the model's 3
    with rasterio.open(S2_SCENE) as src, rasterio.open(bare, "w", **src.profile) as dst:
        dst.write(src.read())
    with pytest.raises(ModelMismatchError, match="13 band"):
        evaluate_scenes(seg, [(bare, S2_LULC)], class_field="LULC_NAME", **QUIET)


def test_cli_evaluate_errors_are_one_line(tmp_path):
    def geoseg(*args):
        return subprocess.run([sys.executable, "-m", "geoseg", *args], capture_output=True, text=True)

    res = geoseg(
        "evaluate",
        "--model",
        "baseline:roads",
        "--images",
        str(ATLANTA_PAN),
        "--labels",
        str(ATLANTA_BUILDINGS),
    )
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "baseline:roads" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = geoseg(
        "evaluate",
        "--model",
        "baseline:buildings",
        "--images",
        str(ATLANTA_PAN),
        "--labels",
        str(ATLANTA_BUILDINGS),
        "--bounds",
        "0,0,1,1",
    )
    assert res.returncode == 2 and "do not overlap" in res.stderr
