"""Bands by role and baselines in ``geoseg run`` on real multispectral imagery: NAIP (R, G, B, NIR uint8,
no band descriptions), Sentinel-2 L1C (13 float32 bands named B01..B12), NC Landsat 7 (six named bands)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from geoseg.bandroles import role_of
from geoseg.baseline import get_baseline
from geoseg.compat import select_bands
from geoseg.config import ClusterConfig, RunConfig
from geoseg.errors import ModelMismatchError
from geoseg.io.raster import open_scene
from geoseg.models.meta import read_meta
from geoseg.modelspec import baseline_bands
from geoseg.run import run_scene

from .conftest import KAMPALA, LANDCOVER_MODEL, ROOT, S2_SCENE, crop_geotiff

NAIP = ROOT / "data" / "samples" / "naip" / "m_4709963_se_14_1_20090818.tif"
LANDSAT = ROOT / "data" / "training" / "nc_landsat7" / "lsat7_2000_stack.tif"
LANDSAT_MODEL = ROOT / "geoseg" / "checkpoints" / "landcover_landsat.pt"


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


def test_evaluate_groups_compare_other_class_schemes_on_the_same_pixels():
    """The baseline (5 classes) and the Landsat model (7 classes) scored against the 7-class strata in
    merged classes: the same pixels are counted for both, and the groups' confusion equals a count by hand."""
    from geoseg.evaluate import Segmenter, evaluate_scenes
    from geoseg.train.labels import read_labels

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
