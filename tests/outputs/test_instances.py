"""Building instances: components, conservative splitting, polygons (real Kampala/Atlanta outlines)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import shapely.affinity
from affine import Affine
from rasterio.features import rasterize

from geoseg.evaluation.metrics import object_scores
from geoseg.outputs.instances import instance_polygons, label_instances
from tests.conftest import ATLANTA_BUILDINGS, ATLANTA_PAN, KAMPALA, KAMPALA_BUILDINGS


def _grid(path):
    with rasterio.open(path) as src:
        return src.transform, (src.height, src.width), src.crs


@pytest.fixture(scope="module")
def kampala_truth():
    transform, shape, crs = _grid(KAMPALA)
    truth = gpd.read_file(KAMPALA_BUILDINGS).to_crs(crs)
    return truth, transform, shape, crs


def test_rasterized_kampala_outlines_are_recovered(kampala_truth):
    truth, transform, shape, crs = kampala_truth
    mask = rasterize(truth.geometry, out_shape=shape, transform=transform).astype(bool)
    labels = label_instances(mask, abs(transform.a))
    assert labels.dtype == np.int32 and labels.shape == shape
    # the 3 outlines under 4 m² (0.09, 1.7, 2.7 m²) are dropped; no outline touches another, none is split
    assert labels.max() == (truth.area >= 4.0).sum() == 62
    polys = instance_polygons(labels, transform, crs)
    assert list(polys.columns) == ["id", "area_m2", "geometry"]
    assert polys.crs == crs and polys["id"].tolist() == list(range(1, 63))
    assert polys.geometry.is_valid.all()
    np.testing.assert_allclose(polys["area_m2"], polys.geometry.area)
    # pixel area of each instance equals its polygon area
    px = np.bincount(labels.ravel())[1:] * abs(transform.a * transform.e)
    np.testing.assert_allclose(polys["area_m2"], px, rtol=1e-6)
    s = object_scores(polys.geometry, truth.geometry)
    # measured: tp 62, fp 0, fn 3 (the dropped slivers), F1 0.976, mean IoU 0.989
    assert s["fp"] == 0 and s["tp"] == 62 and s["fn"] == 3
    assert s["f1"] >= 0.95 and s["mean_iou_matched"] >= 0.97


def test_no_single_real_building_is_split():
    """Every Atlanta footprint (L-shapes, wings, rotated rectangles) stays one instance with splitting on."""
    transform, shape, crs = _grid(ATLANTA_PAN)
    truth = gpd.read_file(ATLANTA_BUILDINGS).to_crs(crs)
    ids = rasterize(
        [(g, i) for i, g in enumerate(truth.geometry, start=1)], out_shape=shape, transform=transform
    )
    labels = label_instances(ids > 0, 0.5, split_touching=True)
    assert labels.max() == len(truth) == 43
    # one instance per footprint and one footprint per instance (a lone corner pixel or two of a footprint,
    # 4-disconnected from it, is dropped as too small)
    both = (ids > 0) & (labels > 0)
    pairs = np.unique(np.stack([ids[both], labels[both]]), axis=1)
    assert pairs.shape[1] == 43
    assert (ids > 0).sum() - both.sum() < 5


def test_single_compact_shapes_are_not_split():
    m = np.zeros((460, 300), bool)
    m[20:60, 20:280] = True  # 10 m x 65 m at 25 cm: one flat distance ridge
    m[100:190, 20:60] = True  # L-shape: vertical arm
    m[150:190, 20:200] = True  # L-shape: horizontal arm
    # a rotated rectangle: its pixelated ridge has many tiny separate maxima (one marker after h-maxima)
    rot = shapely.affinity.rotate(shapely.box(40, 330, 260, 390), 27)
    m |= rasterize([rot], out_shape=m.shape).astype(bool)
    assert label_instances(m, 0.25, split_touching=False).max() == 3
    assert label_instances(m, 0.25).max() == 3


def test_buildings_joined_by_a_neck_are_split():
    m = np.zeros((120, 260), bool)
    m[10:110, 10:110] = True  # 10 x 10 m at 10 cm
    m[10:110, 150:250] = True
    m[55:65, 110:150] = True  # 1 m wide, 4 m long bridge
    assert label_instances(m, 0.1, split_touching=False).max() == 1
    labels = label_instances(m, 0.1)
    assert labels.max() == 2
    assert labels[60, 60] != labels[60, 200] and labels[60, 60] > 0 and labels[60, 200] > 0
    assert (labels > 0).sum() == m.sum()  # splitting keeps every pixel


def test_splitting_separates_real_buildings_merged_by_a_buffer(kampala_truth):
    truth, transform, shape, crs = kampala_truth
    grown = truth.geometry.buffer(0.5, join_style="mitre")  # neighbours 1 m apart now touch
    mask = rasterize(grown, out_shape=shape, transform=transform).astype(bool)
    gsd = abs(transform.a)
    whole = object_scores(
        instance_polygons(label_instances(mask, gsd, split_touching=False), transform, crs).geometry, grown
    )
    split = object_scores(instance_polygons(label_instances(mask, gsd), transform, crs).geometry, grown)
    # measured: 38 components (F1 0.66, 4 fp) -> 46 instances after splitting (F1 0.83, 0 fp)
    assert split["tp"] > whole["tp"] + 5
    assert split["fp"] <= whole["fp"]
    assert split["f1"] > whole["f1"] + 0.1


def test_ids_are_consecutive_in_raster_order():
    m = np.zeros((40, 40), bool)
    m[30:38, 2:10] = True
    m[2:10, 20:30] = True
    m[2:10, 2:10] = True
    labels = label_instances(m, 1.0, min_area_m2=1.0)
    assert labels[2, 2] == 1 and labels[2, 20] == 2 and labels[30, 2] == 3
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_min_area_and_probability_input():
    prob = np.zeros((50, 50), np.float32)
    prob[5:25, 5:25] = 0.9  # 20 x 20 px at 0.5 m = 100 m²
    prob[40:43, 40:43] = 0.8  # 2.25 m²: dropped
    prob[30:35, 5:25] = 0.3  # below 0.5: not a building
    labels = label_instances(prob, 0.5)
    assert labels.max() == 1 and (labels == 1).sum() == 400
    assert label_instances(prob, 0.5, min_area_m2=1.0).max() == 2
    assert label_instances(np.zeros((8, 8), bool), 0.5).max() == 0
    with pytest.raises(ValueError, match="gsd_m"):
        label_instances(prob, 0.0)


def test_polygons_union_parts_of_one_id_and_empty_input():
    labels = np.zeros((10, 10), np.int32)
    labels[0:3, 0:3] = 1
    labels[6:9, 6:9] = 1  # a second part of id 1
    labels[0:2, 7:10] = 2
    t = Affine(2.0, 0, 1000.0, 0, -2.0, 5000.0)
    polys = instance_polygons(labels, t, "EPSG:32636")
    assert polys["id"].tolist() == [1, 2]
    assert polys.geometry.iloc[0].geom_type == "MultiPolygon"
    assert polys["area_m2"].tolist() == [18 * 4.0, 6 * 4.0]
    assert shapely.equals(polys.geometry.iloc[1], shapely.box(1014, 4996, 1020, 5000))
    empty = instance_polygons(np.zeros((5, 5), np.int32), t, "EPSG:32636")
    assert len(empty) == 0 and list(empty.columns) == ["id", "area_m2", "geometry"]
    assert empty.crs == "EPSG:32636"
