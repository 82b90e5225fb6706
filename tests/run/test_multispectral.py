"""Bands by role and baselines in ``geoseg run`` on real multispectral imagery: NAIP (R, G, B, NIR uint8,
no band descriptions), Sentinel-2 L1C (13 float32 bands named B01..B12), NC Landsat 7 (six named bands)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from geoseg.config import ClusterConfig, RunConfig
from geoseg.errors import ModelMismatchError
from geoseg.inference.baseline import get_baseline
from geoseg.inference.modelspec import baseline_bands
from geoseg.inference.scene_checks import select_bands
from geoseg.io.bandroles import role_of
from geoseg.io.raster import open_scene
from geoseg.models.meta import read_meta
from geoseg.run.job import run_scene
from tests.conftest import BUILDINGS_MODEL, KAMPALA, LANDCOVER_MODEL, ROOT, S2_SCENE, crop_geotiff

NAIP = ROOT / "data" / "samples" / "naip" / "m_4709963_se_14_1_20090818.tif"
LANDSAT = ROOT / "data" / "training" / "nc_landsat7" / "lsat7_2000_stack.tif"
LANDSAT_MODEL = ROOT / "geoseg" / "checkpoints" / "landcover_landsat.pt"
NAIP_NAMES = ["red", "green", "blue", "nir"]


def _meta(bands: list[str]):
    return read_meta(LANDCOVER_MODEL).model_copy(update={"bands": bands, "in_channels": len(bands)})


def _copy(src: Path, dst: Path, order: list[int] | None = None, descriptions=None) -> Path:
    """A copy of a real scene with its bands in ``order`` (1-based) and the given descriptions."""
    with rasterio.open(src) as s:
        order = order or list(range(1, s.count + 1))
        data, profile = s.read(order), s.profile | {"count": len(order)}
        names = [s.descriptions[i - 1] for i in order]
    with rasterio.open(dst, "w", **profile) as d:
        d.write(data)
        d.descriptions = tuple(descriptions if descriptions is not None else names)
    return dst


def _config(scene, out, cluster, **kw) -> RunConfig:
    return RunConfig(
        scene=scene, out=out, progress=False, cluster=ClusterConfig(scheduler=cluster.scheduler_address), **kw
    )


def _labels(out: Path, name: str = "landcover.tif") -> np.ndarray:
    with rasterio.open(out / name) as src:
        return src.read(1)


# ------------------------------------------------------------------------------------------ bands by role


def test_band_name_aliases():
    assert [role_of(n) for n in ["B04", "Red", " RED ", "r", "b08", "B8A", "Near-Infrared", "NIR"]] == [
        "red", "red", "red", "red", "nir", "nir08", "nir", "nir",
    ]  # fmt: skip
    assert [role_of(n) for n in ["SWIR 1", "swir16", "B11", "swir_2", "B12", "coastal", "pan"]] == [
        "swir1", "swir1", "swir1", "swir2", "swir2", "coastal", "pan",
    ]  # fmt: skip
    # Landsat band numbers mean different bands on Landsat 7 and 8: never guessed
    assert [role_of(n) for n in ["B4", "b1", "Band 1", None, ""]] == [None] * 5


def test_sentinel2_bands_matched_by_description():
    scene = open_scene(S2_SCENE)
    assert select_bands(scene, _meta(["red", "green", "blue"]), None) == [4, 3, 2]
    assert select_bands(scene, _meta(["swir1", "nir", "red", "green"]), None) == [12, 8, 4, 3]
    assert select_bands(scene, _meta(["B02", "nir08"]), None) == [2, 9]
    # indexes still win over names
    assert select_bands(scene, _meta(["red", "green", "blue"]), [1, 2, 3]) == [1, 2, 3]


def test_missing_band_is_a_one_line_error_naming_file_and_band():
    scene = open_scene(S2_SCENE)
    with pytest.raises(ModelMismatchError) as exc:
        select_bands(scene, _meta(["red", "green", "pan"]), None)
    msg = str(exc.value)
    assert "\n" not in msg and str(S2_SCENE.name) in msg and "no pan band" in msg and "--band-names" in msg


def test_band_names_name_a_scene_without_descriptions():
    scene = open_scene(NAIP)
    assert scene.band_names == (None,) * 4
    rgb = _meta(["red", "green", "blue"])
    with pytest.raises(ModelMismatchError, match="--band-names"):  # 4 bands, no names, a 3-band model
        select_bands(scene, rgb, None)
    names = ["red", "green", "blue", "nir"]
    assert select_bands(scene, rgb, None, names) == [1, 2, 3]
    assert select_bands(scene, _meta(["nir", "red", "green"]), None, names) == [4, 1, 2]
    with pytest.raises(ModelMismatchError, match="gives 3 name"):
        select_bands(scene, rgb, None, ["red", "green", "blue"])
    with pytest.raises(ModelMismatchError, match="unknown band name"):
        select_bands(scene, rgb, None, ["red", "green", "blue", "band4"])
    with pytest.raises(ModelMismatchError, match="no swir1 band"):
        select_bands(scene, _meta(["swir1", "nir", "red"]), None, names)


def test_baseline_band_needs():
    lc, bd = get_baseline("baseline:landcover"), get_baseline("baseline:buildings")
    assert set(lc.uses) <= {"red", "green", "blue", "nir", "swir1", "pan"}
    assert ("red", "green", "nir") in lc.needs and ("red", "green", "blue") in bd.needs
    s2 = open_scene(S2_SCENE)
    assert baseline_bands(s2, "baseline:landcover", None, None) == (
        [4, 3, 2, 8],
        ["red", "green", "blue", "nir"],
    )
    naip = open_scene(NAIP)  # no names: R, G, B, NIR by position
    assert baseline_bands(naip, "baseline:landcover", None, None) == (
        [1, 2, 3, 4],
        ["red", "green", "blue", "nir"],
    )
    assert baseline_bands(naip, "baseline:landcover", None, ["nir", "red", "green", "blue"]) == (
        [2, 3, 4, 1], ["red", "green", "blue", "nir"],
    )  # fmt: skip
    landsat = open_scene(LANDSAT)
    assert baseline_bands(landsat, "baseline:landcover", None, None)[0] == [3, 2, 1, 4]
    with pytest.raises(ModelMismatchError, match="no blue band"):  # buildings need R, G, B
        baseline_bands(
            landsat, "baseline:buildings", None, ["green", "red", "nir", "swir1", "swir2", "nir08"]
        )


def test_unnamed_multispectral_scene_needs_band_names(tmp_path):
    bare = _copy(S2_SCENE, tmp_path / "s2_bare.tif", descriptions=[""] * 13)
    scene = open_scene(bare)
    with pytest.raises(ModelMismatchError) as exc:
        baseline_bands(scene, "baseline:landcover", None, None)
    assert "\n" not in str(exc.value) and "s2_bare.tif" in str(exc.value) and "--band-names" in str(exc.value)


# ------------------------------------------------------------------------------------- baselines in run


@pytest.mark.parametrize("scene", [NAIP, S2_SCENE], ids=["naip", "sentinel2"])
def test_landcover_baseline_runs_tiled_like_the_whole_image(scene, tmp_path, dask_cluster):
    """The tiled run equals the baseline on the whole image (NDVI/NDWI rules are per pixel at 5-10 m),
    with the baseline's classes and colours in the COG, the GeoPackage and run.json."""
    out = tmp_path / "out"
    summary = run_scene(
        _config(scene, out, dask_cluster, model="baseline:landcover", tile=256, overlap=32),
        notify=lambda m: None,
    )
    assert summary.tiles > 1 or scene == S2_SCENE
    labels = _labels(out)
    base = get_baseline("baseline:landcover")
    sc = open_scene(scene)
    idx, roles = baseline_bands(sc, "baseline:landcover", None, None)
    with rasterio.open(scene) as src:
        image, valid = src.read(idx), src.dataset_mask() > 0
    expected = np.asarray([c.id for c in base.classes], np.uint8)[base.predict(image, valid, roles, sc.gsd_m)]
    expected[~valid] = 0
    np.testing.assert_array_equal(labels, expected)
    assert (labels == 4).any()  # vegetation on both scenes
    with rasterio.open(out / "landcover.tif") as src:
        assert src.colormap(1)[5][:3] == (0x31, 0x82, 0xCE)  # water's colour
    frame = pyogrio.read_dataframe(out / "geoseg.gpkg", layer="landcover")
    assert set(frame.class_name) <= {c.name for c in base.classes} and len(frame) > 0
    item = json.loads((out / "run.json").read_text())
    text = json.dumps(item)
    assert "baseline:landcover" in text and '"water"' in text and "#3182CE" in text
    assert item["properties"]["geoseg:parameters"]["bands"] == idx


def test_buildings_baseline_runs_through_the_pipeline(tmp_path, dask_cluster):
    crop = crop_geotiff(KAMPALA, tmp_path / "kampala.tif", 700, 700, 640, 640)
    out = tmp_path / "out"
    run_scene(_config(crop, out, dask_cluster, model="baseline:buildings", tile=512), notify=lambda m: None)
    ids = _labels(out, "buildings.tif")
    frame = pyogrio.read_dataframe(out / "geoseg.gpkg", layer="buildings")
    assert len(frame) > 0 and ids.max() > 0
    assert set(np.unique(ids[ids > 0])) == set(frame["id"])


# ------------------------------------------------------------------------------ the shipped Landsat model


def test_landsat_model_matches_bands_by_name(tmp_path, dask_cluster):
    """The shipped NC Landsat 7 model on the real stack, on a copy with its bands in reverse order (matched by
    description), and on a copy without descriptions named with ``band_names``: the same map."""
    meta = read_meta(LANDSAT_MODEL)
    assert meta.bands == ["blue", "green", "red", "nir", "swir1", "swir2"] and meta.gsd_m == 28.5
    assert LANDSAT_MODEL.stat().st_size <= 15 * 2**20
    reverse = _copy(LANDSAT, tmp_path / "reversed.tif", order=[6, 5, 4, 3, 2, 1])
    bare = _copy(LANDSAT, tmp_path / "bare.tif", order=[4, 3, 2, 1, 5, 6], descriptions=[""] * 6)
    maps = []
    for scene, names in [
        (LANDSAT, None),
        (reverse, None),
        (bare, ["nir", "red", "green", "blue", "swir1", "swir2"]),
    ]:
        out = tmp_path / scene.stem
        run_scene(
            _config(scene, out, dask_cluster, model=LANDSAT_MODEL, band_names=names), notify=lambda m: None
        )
        maps.append(_labels(out))
        bands = json.loads((out / "run.json").read_text())["properties"]["geoseg:parameters"]["bands"]
        assert (
            bands
            == {LANDSAT: [1, 2, 3, 4, 5, 6], reverse: [6, 5, 4, 3, 2, 1], bare: [4, 3, 2, 1, 5, 6]}[scene]
        )
    np.testing.assert_array_equal(maps[0], maps[1])
    np.testing.assert_array_equal(maps[0], maps[2])
    with rasterio.open(LANDSAT) as src:
        valid = src.dataset_mask() > 0
    assert (maps[0][valid] > 0).all() and (maps[0][~valid] == 0).all()
    found = set(np.unique(maps[0][valid]))
    assert {1, 5} <= found  # developed and forest, the scene's two main classes
    wrong = ["nir", "red", "green", "blue", "swir1", "coastal"]
    with pytest.raises(ModelMismatchError, match="no swir2 band"):
        run_scene(
            _config(bare, tmp_path / "x", dask_cluster, model=LANDSAT_MODEL, band_names=wrong),
            notify=lambda m: None,
        )
    assert not (tmp_path / "x").exists()


def test_evaluate_groups_compare_other_class_schemes_on_the_same_pixels(tmp_path):
    """The baseline (5 classes) and the Landsat model (7 classes) scored against the 7-class strata in
    merged classes: the same pixels are counted for both, and the groups' confusion equals a count by hand."""
    from geoseg.evaluation.evaluate import Segmenter, evaluate_scenes
    from geoseg.io.labels import read_labels

    labels = LANDSAT.parent / "strata.tif"
    strata = ["developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment"]
    groups = {
        "vegetation": ["agriculture", "herbaceous", "shrubland", "forest", "vegetation"],
        "water": ["water"],
        "other": ["developed", "sediment", "building", "land", "road"],
    }
    reports = {}
    for spec in ("baseline:landcover", str(LANDSAT_MODEL)):
        seg = Segmenter(spec, device="cpu")
        reports[spec] = evaluate_scenes(
            seg, [(LANDSAT, labels)], notify=lambda m: None, label_classes=strata, groups=groups
        )
    base, model = reports.values()
    assert base.classes == model.classes == list(groups)
    np.testing.assert_array_equal(base.confusion.sum(1), model.confusion.sum(1))  # the same truth pixels
    scene = open_scene(LANDSAT)
    truth = read_labels(labels, scene.geobox, strata)
    with rasterio.open(LANDSAT) as src:
        valid = src.dataset_mask() > 0
    g = np.array([2, 0, 0, 0, 0, 1, 2])
    t = g[truth[valid & (truth != 255)]]
    assert base.confusion.sum() == t.size
    np.testing.assert_array_equal(base.confusion.sum(1), np.bincount(t, minlength=3))
    # the same scores from a copy without band descriptions, named with band_names (--band-names)
    bare = _copy(LANDSAT, tmp_path / "bare.tif", order=[4, 3, 2, 1, 5, 6], descriptions=[""] * 6)
    names = ["nir", "red", "green", "blue", "swir1", "swir2"]
    for spec, report in reports.items():
        seg = Segmenter(spec, device="cpu", band_names=names)
        again = evaluate_scenes(
            seg, [(bare, labels)], notify=lambda m: None, label_classes=strata, groups=groups
        )
        np.testing.assert_array_equal(again.confusion, report.confusion)


def test_workflow_files_take_a_baseline_and_band_names(tmp_path):
    from geoseg.run.workflow import load_workflow

    (tmp_path / "wf.yaml").write_text(
        f"name: naip\nout_root: out\nscenes: [{NAIP}]\n"
        "parameters:\n  model: baseline:landcover\n  band_names: [red, green, blue, nir]\n"
    )
    _, runs = load_workflow(tmp_path / "wf.yaml")
    assert str(runs[0].model) == "baseline:landcover" and runs[0].band_names == [
        "red",
        "green",
        "blue",
        "nir",
    ]
    (tmp_path / "both.yaml").write_text(
        f"name: both\nout_root: out\nscenes: [{NAIP}]\n"
        "parameters:\n  models: [ckpt/landcover.pt, baseline:buildings]\n"
    )
    _, runs = load_workflow(tmp_path / "both.yaml")
    assert runs[0].models == [tmp_path / "ckpt" / "landcover.pt", Path("baseline:buildings")]


# ---------------------------------------------------------------------------- one read, both products


BOTH_PRODUCTS = {"landcover.tif", "landcover.tif.aux.xml", "buildings.tif", "geoseg.gpkg", "run.json"}


def test_one_read_gives_both_products_equal_to_separate_runs(tmp_path, monkeypatch):
    """``--model landcover_rgb.pt --model buildings_rgb.pt``: every tile is read once (counted in the
    in-process worker), and each product equals its single-model run (same tiles, same overlap)."""
    import geoseg.run.graph
    import geoseg.run.multirun

    crop = crop_geotiff(KAMPALA, tmp_path / "kampala.tif", 300, 500, 900, 1200)
    reads = {"multi": 0, "single": 0}

    def counting(key, fn):
        def read(*args, **kwargs):
            reads[key] += 1
            return fn(*args, **kwargs)

        return read

    multi_read = counting("multi", geoseg.run.multirun.read_window)
    monkeypatch.setattr(geoseg.run.multirun, "read_window", multi_read)
    monkeypatch.setattr(geoseg.run.graph, "read_window", counting("single", geoseg.run.graph.read_window))
    in_process = ClusterConfig(processes=False, threads_per_worker=2)
    common = {
        "scene": crop,
        "progress": False,
        "cluster": in_process,
        "tile": 256,
        "overlap": 32,
        "resample": False,
    }
    both = tmp_path / "both"
    summary = run_scene(
        RunConfig(out=both, models=[LANDCOVER_MODEL, BUILDINGS_MODEL], **common), notify=print
    )
    assert reads == {"multi": summary.tiles, "single": 0}  # one read per tile for both models
    assert {p.name for p in both.iterdir()} == BOTH_PRODUCTS
    for model, name in [(LANDCOVER_MODEL, "landcover.tif"), (BUILDINGS_MODEL, "buildings.tif")]:
        out = tmp_path / model.stem
        run_scene(RunConfig(out=out, model=model, **common), notify=print)
        np.testing.assert_array_equal(_labels(both, name), _labels(out, name))
    assert reads["single"] == 2 * summary.tiles
    layers = {name for name, _ in pyogrio.list_layers(both / "geoseg.gpkg")}
    assert {"landcover", "buildings"} <= layers
    for layer, single in [("landcover", LANDCOVER_MODEL.stem), ("buildings", BUILDINGS_MODEL.stem)]:
        a = pyogrio.read_dataframe(both / "geoseg.gpkg", layer=layer)
        b = pyogrio.read_dataframe(tmp_path / single / "geoseg.gpkg", layer=layer)
        assert len(a) == len(b) > 0
    styled = pyogrio.read_dataframe(both / "geoseg.gpkg", layer="layer_styles", read_geometry=False)
    assert set(styled.f_table_name) == {"landcover", "buildings"}  # each layer opens styled in QGIS
    item = json.loads((both / "run.json").read_text())
    models = item["properties"]["geoseg:model"]["models"]
    assert [m["metadata"]["task"] for m in models] == ["landcover", "buildings"]
    assert {"landcover", "buildings", "vectors"} <= set(item["assets"])


def test_two_models_of_one_task_are_refused(tmp_path, dask_cluster):
    out = tmp_path / "out"
    with pytest.raises(ModelMismatchError, match="one product per task"):
        run_scene(
            _config(
                NAIP, out, dask_cluster, models=["baseline:landcover", LANDCOVER_MODEL], band_names=NAIP_NAMES
            ),
            notify=lambda m: None,
        )
    assert not out.exists()


def test_cli_default_run_writes_both_bundled_products(tmp_path):
    import subprocess
    import sys

    crop = crop_geotiff(KAMPALA, tmp_path / "kampala.tif", 600, 800, 512, 512)
    out = tmp_path / "out"
    args = ["run", str(crop), "--out", str(out), "--no-progress", "--in-process"]
    res = subprocess.run([sys.executable, "-m", "geoseg", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == BOTH_PRODUCTS


def test_baseline_worker_path_imports_no_torch():
    """What a worker imports and runs for a baseline (task, predictor, one batch of real NAIP tiles)."""
    import subprocess
    import sys

    code = (
        "import sys, rasterio, numpy as np\n"
        "from geoseg.inference.modelspec import BaselineTask\n"
        "from geoseg.run.graph import model_predictor\n"
        "t = BaselineTask('baseline:landcover', 'cpu', 1, (1, 2, 3, 4, 5), 'auto', False,"
        " band_roles=('red', 'green', 'blue', 'nir'), gsd_m=5.0)\n"
        f"src = rasterio.open({str(NAIP)!r})\n"
        "x = src.read(window=((0, 128), (0, 128)))[None]\n"
        "out, _ = model_predictor(t).predict_timed(x, np.ones((1, 128, 128), bool))\n"
        "assert out.shape == (1, 5, 128, 128) and (out.sum(1) == 1).all()\n"
        "print('torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
