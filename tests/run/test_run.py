"""End-to-end runs of the pipeline on real scenes with a real Dask cluster and the bundled model."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pystac
import pytest
import rasterio
import torch
from PIL import Image
from rasterio import features
from rio_cogeo.cogeo import cog_validate

from geoseg.config import ClusterConfig, RunConfig
from geoseg.errors import OutputExistsError
from geoseg.inference.precision import cpu_label
from geoseg.inference.predictor import Predictor
from geoseg.io.raster import open_scene
from geoseg.models.checkpoint import load_checkpoint
from geoseg.run.job import run_scene
from tests.conftest import KAMPALA, LANDCOVER_MODEL, LANDSAT_RGB, needs_qgis, open_in_qgis


def config(scene, out, cluster, **kw) -> RunConfig:
    return RunConfig(
        scene=scene,
        out=out,
        model=LANDCOVER_MODEL,
        progress=False,
        cluster=ClusterConfig(scheduler=cluster.scheduler_address),
        **({"device": "cpu"} | kw),  # the CPU path, also on machines with a GPU
    )


@pytest.fixture(scope="module")
def kampala_run(tmp_path_factory, dask_cluster):
    out = tmp_path_factory.mktemp("run") / "kampala"
    summary = run_scene(config(KAMPALA, out, dask_cluster), notify=lambda m: None)
    return out, summary


def test_landcover_cog_matches_scene_grid(kampala_run):
    out, summary = kampala_run
    assert summary.tiles >= 1
    with rasterio.open(KAMPALA) as src, rasterio.open(out / "landcover.tif") as lc:
        assert lc.crs == src.crs
        assert lc.transform.almost_equals(src.transform, precision=1e-12)
        assert (lc.height, lc.width) == (src.height, src.width)
        assert lc.dtypes[0] == "uint8" and lc.nodata == 0
        assert lc.profile["tiled"] and lc.overviews(1)
        cmap = lc.colormap(1)
        meta, _ = load_checkpoint(LANDCOVER_MODEL).meta, None
        for c in meta.classes:
            assert cmap[c.id][:3] == c.rgb
        names = json.loads(lc.tags()["CLASS_NAMES"])
        assert {int(k): v for k, v in names.items()} == {c.id: c.name for c in meta.classes}
        labels = lc.read(1)
        valid = src.dataset_mask() > 0
    ok, errors, _ = cog_validate(str(out / "landcover.tif"))
    assert ok, errors
    assert np.all(labels[~valid] == 0)
    assert np.all(np.isin(labels[valid], [c.id for c in meta.classes]))
    # A meaningful model on this suburban scene finds several classes, not one.
    present = np.unique(labels[valid])
    assert len(present) >= 3, present


def test_geopackage_polygons_rasterize_back_to_mask(kampala_run):
    out, _ = kampala_run
    assert [name for name, _ in pyogrio.list_layers(out / "geoseg.gpkg")] == ["landcover"] or "landcover" in [
        name for name, _ in pyogrio.list_layers(out / "geoseg.gpkg")
    ]
    gdf = gpd.read_file(out / "geoseg.gpkg", layer="landcover", engine="pyogrio")
    with rasterio.open(out / "landcover.tif") as lc:
        labels, transform, crs = lc.read(1), lc.transform, lc.crs
    assert gdf.crs.equals(crs)
    assert gdf.geometry.is_valid.all()
    assert {"class_id", "class_name", "area_m2"} <= set(gdf.columns)
    burned = features.rasterize(
        zip(gdf.geometry, gdf.class_id.astype(int), strict=False),
        out_shape=labels.shape,
        transform=transform,
        fill=0,
        dtype="uint8",
    )
    assert (burned == labels).mean() >= 0.999
    # Polygons cover exactly the labelled pixels, and area_m2 is ground area: Web Mercator's planar
    # area is off by ~0.7 % near the equator (it is not conformal on the ellipsoid), an equal-area CRS is not.
    px_area = abs(transform.a * transform.e)
    assert gdf.area.sum() == pytest.approx((labels > 0).sum() * px_area, rel=1e-6)
    assert gdf.area_m2.sum() == pytest.approx(gdf.to_crs("EPSG:6933").area.sum(), rel=1e-4)
    assert abs(gdf.area_m2.sum() / gdf.area.sum() - 1) > 0.003


def test_run_json_is_a_stac_item(kampala_run):
    out, _ = kampala_run
    item = pystac.Item.from_file(str(out / "run.json"))
    assert item.properties["geoseg:model"]["sha256"]
    assert item.properties["geoseg:timing"]["total_s"] > 0
    assert "landcover" in item.assets and "vectors" in item.assets
    lon, lat = (item.bbox[0] + item.bbox[2]) / 2, (item.bbox[1] + item.bbox[3]) / 2
    assert 32.5 < lon < 32.7 and 0.3 < lat < 0.4


def test_rerun_is_a_no_op_and_other_params_refuse(kampala_run, dask_cluster):
    out, _ = kampala_run
    before = (out / "landcover.tif").stat().st_mtime_ns
    summary = run_scene(config(KAMPALA, out, dask_cluster), notify=lambda m: None)
    assert summary.skipped
    assert (out / "landcover.tif").stat().st_mtime_ns == before
    with pytest.raises(OutputExistsError):
        run_scene(config(KAMPALA, out, dask_cluster, overlap=32), notify=lambda m: None)
    assert not list(out.parent.glob(".*partial*"))


def test_tiled_prediction_equals_whole_image(tmp_path, kampala_15cm, dask_cluster):
    """Seam-free stitching: at the model's own tile overlap, the tiled run (9 tiles) agrees with one
    forward pass over the whole scene on >= 99.9 % of pixels."""
    out = tmp_path / "tiled"
    summary = run_scene(
        config(kampala_15cm, out, dask_cluster, resample=False, mmu_m2=0), notify=lambda m: None
    )
    assert summary.tiles == 9
    ckpt = load_checkpoint(LANDCOVER_MODEL)
    predictor = Predictor(ckpt, torch.device("cpu"))
    with rasterio.open(kampala_15cm) as src:
        image = src.read()
        valid = src.dataset_mask() > 0
    whole = predictor.predict(image[None], valid[None])[0]
    ids = np.array([c.id for c in ckpt.meta.classes], np.uint8)
    expected = ids[whole.argmax(0)]
    with rasterio.open(out / "landcover.tif") as lc:
        tiled = lc.read(1)
    agreement = (tiled[valid] == expected[valid]).mean()
    assert agreement >= 0.999, agreement


def test_nodata_collar_is_nodata_and_empty_tiles_skipped(tmp_path, dask_cluster):
    out = tmp_path / "landsat"
    summary = run_scene(
        config(LANDSAT_RGB, out, dask_cluster, tile=128, overlap=16, batch=4), notify=lambda m: None
    )
    assert summary.tiles_skipped > 0
    with rasterio.open(LANDSAT_RGB) as src, rasterio.open(out / "landcover.tif") as lc:
        valid = src.dataset_mask() > 0
        labels = lc.read(1)
        assert lc.transform == src.transform and lc.crs == src.crs
    assert np.all(labels[~valid] == 0)
    assert np.all(labels[valid] > 0)
    scene = open_scene(LANDSAT_RGB)
    assert scene.gsd_m == pytest.approx(300, rel=0.01)


@needs_qgis
def test_outputs_open_styled_in_qgis(kampala_run, tmp_path):
    """A real GIS client: QGIS opens the COG (paletted) and the styled GeoPackage layer, and renders them."""
    infos, png = open_in_qgis(kampala_run[0], tmp_path)
    raster = next(i for i in infos if i["layer"] == "landcover.tif")
    vector = next(i for i in infos if i["layer"] == "landcover")
    assert raster["renderer"] == "paletted"
    assert vector["styled"] and vector["renderer"] == "categorizedSymbol" and vector["features"] > 0
    with Image.open(png) as im:
        colours = len(set(im.convert("RGB").getdata()))
    assert colours > 3  # something was drawn, in several class colours


def test_model_is_loaded_once_per_worker(kampala_run, dask_cluster, tmp_path):
    from distributed import Client

    def cache_info():  # the torch predictor's and the torch-free OpenVINO predictor's loads and reuses
        from geoseg.inference.openvino import _load
        from geoseg.inference.predictor import get_predictor

        a, b = get_predictor.cache_info(), _load.cache_info()
        return a.misses + b.misses, a.hits + b.hits

    with Client(dask_cluster.scheduler_address) as client:
        before = client.run(cache_info)
        run_scene(config(LANDSAT_RGB, tmp_path / "again", dask_cluster), notify=lambda m: None)
        after = client.run(cache_info)
    assert before and before.keys() == after.keys()
    for worker, (misses, hits) in after.items():
        assert misses == before[worker][0] >= 1  # loaded by an earlier run, not again
        assert hits > before[worker][1]  # ... and reused by this run's batches


def test_default_engine_is_openvino_on_cpu_workers_in_f32(kampala_run):
    """The default states f32 to OpenVINO on any CPU, and run.json records what the compiled model
    reported and the workers' CPU."""
    out, _ = kampala_run
    params = json.loads((out / "run.json").read_text())["properties"]["geoseg:parameters"]
    assert params["engine"] == "auto" and params["engines_used"] == ["openvino"]
    assert params["precision"] is None
    assert params["precisions_used"] == [{"engine": "openvino", "precision": "f32"}]
    assert params["worker_cpus"] == [cpu_label()]  # the workers run on this machine


def test_precision_is_part_of_the_rerun_fingerprint(tmp_path, dask_cluster):
    from geoseg.run.job import fingerprint

    base = config(LANDSAT_RGB, tmp_path / "o", dask_cluster)
    variants = [base.model_copy(update={"precision": p}) for p in (None, "f32", "bf16", "auto")]
    prints = {fingerprint(cfg, "sha") for cfg in variants}
    assert len(prints) == 4


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_engines_give_the_same_map(kampala_run, tmp_path, dask_cluster, engine):
    """The default (openvino) run against the torch reference and ONNX Runtime: same classes."""
    out, _ = kampala_run
    other = tmp_path / engine
    run_scene(config(KAMPALA, other, dask_cluster, engine=engine), notify=lambda m: None)
    with rasterio.open(out / "landcover.tif") as a, rasterio.open(other / "landcover.tif") as b:
        agree = (a.read(1) == b.read(1)).mean()
    assert agree > 0.999
    params = json.loads((other / "run.json").read_text())["properties"]["geoseg:parameters"]
    assert params["engine"] == engine and params["engines_used"] == [engine]


def test_demo_outputs_are_identical_across_runs(kampala_run, tmp_path, dask_cluster):
    """Same scene, model and options: landcover.tif byte for byte, the same GeoPackage features."""
    import pyogrio

    out, _ = kampala_run
    again = tmp_path / "again"
    run_scene(config(KAMPALA, again, dask_cluster), notify=lambda m: None)
    assert (again / "landcover.tif").read_bytes() == (out / "landcover.tif").read_bytes()
    first = pyogrio.read_dataframe(out / "geoseg.gpkg", layer="landcover")
    second = pyogrio.read_dataframe(again / "geoseg.gpkg", layer="landcover")
    assert len(first) > 0 and list(first.columns) == list(second.columns)
    assert first.geometry.to_wkb().tolist() == second.geometry.to_wkb().tolist()
    attrs = [c for c in first.columns if c != "geometry"]
    assert first[attrs].equals(second[attrs])
