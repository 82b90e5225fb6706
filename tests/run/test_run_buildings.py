"""``geoseg run`` with the bundled building model: building ids and footprints, seam-free."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.features import rasterize

from geoseg.config import ClusterConfig, RunConfig
from geoseg.evaluation.metrics import object_scores
from geoseg.run.job import run_scene
from tests.conftest import BUILDINGS_MODEL, KAMPALA_BUILDINGS, needs_qgis, open_in_qgis


def run(scene, out, cluster, **kw):
    cfg = RunConfig(
        scene=scene,
        out=out,
        model=BUILDINGS_MODEL,
        progress=False,
        cluster=ClusterConfig(scheduler=cluster.scheduler_address),
        **({"device": "cpu"} | kw),
    )
    return run_scene(cfg, notify=lambda m: None)


@pytest.fixture(scope="module")
def small_blocks(tmp_path_factory, kampala_crop, dask_cluster):
    """The Kampala crop (1200x900) cut into 512-pixel output blocks: many buildings cross seams."""
    out = tmp_path_factory.mktemp("buildings") / "blocks512"
    run(kampala_crop, out, dask_cluster, block=512)
    return out


def test_building_outputs_agree_with_each_other(small_blocks, kampala_crop):
    out = small_blocks
    assert {p.name for p in out.iterdir()} == {"buildings.tif", "geoseg.gpkg", "run.json"}
    layer = pyogrio.read_dataframe(out / "geoseg.gpkg", layer="buildings")
    assert len(layer) > 5 and layer["id"].is_unique
    assert ((layer["score"] > 0.5) & (layer["score"] <= 1)).all()
    assert (layer["area_m2"] >= 4).all() and layer.geometry.is_valid.all()
    with rasterio.open(out / "buildings.tif") as ids, rasterio.open(kampala_crop) as src:
        assert (ids.crs, ids.transform, ids.shape, ids.dtypes[0]) == (
            src.crs,
            src.transform,
            src.shape,
            "uint32",
        )
        raster = ids.read(1)
        # Each footprint rasterizes back onto exactly the pixels carrying its id.
        burned = rasterize(
            zip(layer.geometry, layer["id"], strict=True),
            out_shape=src.shape,
            transform=src.transform,
            dtype="uint32",
        )
    assert np.array_equal(raster, burned)
    assert set(np.unique(raster)) == {0, *layer["id"]}


def test_buildings_are_not_split_at_block_seams(small_blocks, tmp_path, kampala_crop, dask_cluster):
    whole = tmp_path / "one_block"
    run(kampala_crop, whole, dask_cluster, block=2048)
    a = pyogrio.read_dataframe(small_blocks / "geoseg.gpkg", layer="buildings")
    b = pyogrio.read_dataframe(whole / "geoseg.gpkg", layer="buildings")
    assert len(a) == len(b)
    assert sorted(np.round(a["area_m2"], 3)) == sorted(np.round(b["area_m2"], 3))
    assert object_scores(list(a.geometry), list(b.geometry), min_iou=0.999)["f1"] == 1.0
    # ids follow the buildings' positions, not the order blocks finished in: the same in both runs
    with rasterio.open(small_blocks / "buildings.tif") as x, rasterio.open(whole / "buildings.tif") as y:
        assert np.array_equal(x.read(1), y.read(1))
    assert a["id"].tolist() == list(range(1, len(a) + 1))


def test_bundled_building_model_finds_labelled_buildings(small_blocks):
    found = pyogrio.read_dataframe(small_blocks / "geoseg.gpkg", layer="buildings")
    truth = pyogrio.read_dataframe(KAMPALA_BUILDINGS).to_crs(found.crs).clip(found.total_bounds)
    scores = object_scores(list(found.geometry), list(truth.geometry))
    # Most of this crop is the model's training area: this checks the run path, not generalisation.
    assert scores["tp"] >= 5 and scores["f1"] > 0.3


@needs_qgis
def test_building_outputs_open_styled_in_qgis(small_blocks, tmp_path):
    infos, _ = open_in_qgis(small_blocks, tmp_path)
    raster = next(i for i in infos if i["layer"] == "buildings.tif")
    vector = next(i for i in infos if i["layer"] == "buildings")
    assert raster["valid"] and raster["crs"]
    assert vector["styled"] and vector["renderer"] == "singleSymbol" and vector["features"] > 5


def test_touching_buildings_joined_by_a_neck_become_two(tmp_path):
    from odc.geo.geobox import GeoBox
    from shapely.geometry import box

    from geoseg.outputs.buildings import BuildingOutputs

    grid = GeoBox.from_bbox((0, 0, 60, 30), crs="EPSG:32633", resolution=0.5)
    outputs = BuildingOutputs(tmp_path, tmp_path / "b.gpkg", grid, 0.5, 2, {}, [])
    pair = box(2, 5, 22, 25).union(box(22, 13, 26, 17)).union(box(26, 5, 46, 25))  # 20 m squares, 4 m neck
    single = box(50, 5, 58, 25)  # a convex building stays whole
    try:
        parts = outputs._split_touching([pair, single])
    finally:
        outputs.abort()
    assert len(parts) == 3
    assert sum(p.area for p in parts) == pytest.approx(pair.area + single.area, rel=0.01)
