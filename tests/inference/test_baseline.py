"""Classical baselines on real imagery: Kampala drone RGB, Atlanta panchromatic, Landsat RGB, Sentinel-2."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from rasterio.windows import Window

from geoseg.evaluation.metrics import object_scores
from geoseg.inference.baseline import BASELINES, band_roles, get_baseline
from geoseg.models.checkpoint import read_checkpoint_meta
from geoseg.outputs.instances import instance_polygons, label_instances
from tests.conftest import (
    ATLANTA_PAN,
    DUBAI,
    KAMPALA,
    KAMPALA_BUILDINGS,
    LANDCOVER_MODEL,
    LANDSAT_RGB,
    S2_LULC,
    S2_SCENE,
)

RGB = ["red", "green", "blue"]
LAND, VEGETATION, WATER = 1, 3, 4  # indices into the landcover baseline's classes


def _read(path, row=0, col=0, height=None, width=None):
    with rasterio.open(path) as src:
        win = Window(col, row, width or src.width, height or src.height)
        image = src.read(window=win)
        valid = src.dataset_mask(window=win) > 0
        return image, valid, abs(src.res[0])


@pytest.fixture(scope="module")
def kampala_crop():
    return _read(KAMPALA, 600, 800, 512, 512)


def test_registry_and_unknown_name():
    assert set(BASELINES) == {"baseline:landcover", "baseline:buildings"}
    lc, b = get_baseline("baseline:landcover"), get_baseline("baseline:buildings")
    assert (lc.name, lc.task, b.name, b.task) == (
        "baseline:landcover", "landcover", "baseline:buildings", "buildings",
    )  # fmt: skip
    assert [(c.id, c.name) for c in b.classes] == [(1, "background"), (2, "building")]
    with pytest.raises(ValueError) as exc:
        get_baseline("baseline:roads")
    msg = str(exc.value)
    assert "\n" not in msg and "baseline:landcover" in msg and "baseline:buildings" in msg


def test_landcover_classes_match_the_bundled_model():
    classes = get_baseline("baseline:landcover").classes
    assert [(c.id, c.name, c.color) for c in classes] == [
        (1, "building", "#E3342F"),
        (2, "land", "#D9C8A9"),
        (3, "road", "#6C6C6C"),
        (4, "vegetation", "#38A169"),
        (5, "water", "#3182CE"),
    ]
    meta, _ = read_checkpoint_meta(LANDCOVER_MODEL)
    assert [c.name for c in meta.classes] == [c.name for c in classes]


@pytest.mark.parametrize("spec", sorted(BASELINES))
@pytest.mark.parametrize("scene", ["kampala_rgb_uint8", "atlanta_pan_uint16"])
def test_output_shape_dtype_range_and_determinism(spec, scene, kampala_crop):
    image, valid, gsd = (
        kampala_crop if scene.startswith("kampala") else _read(ATLANTA_PAN, 100, 100, 400, 400)
    )
    bands = RGB if image.shape[0] == 3 else ["pan"]
    base = get_baseline(spec)
    out = base.predict(image, valid, bands, gsd)
    assert out.shape == image.shape[1:] and out.dtype == np.uint8
    assert out.max() < len(base.classes)
    assert len(np.unique(out[valid])) >= 2  # not a constant answer
    np.testing.assert_array_equal(out, base.predict(image, valid, bands, gsd))
    # unknown band names fall back to R, G, B / pan; gsd None falls back to 0.5 m
    np.testing.assert_array_equal(out, base.predict(image, valid, [""] * image.shape[0], gsd))
    assert base.predict(image, valid, bands, None).shape == out.shape


def test_band_roles():
    assert band_roles(["", "", ""], 3) == {"red": 0, "green": 1, "blue": 2}
    assert band_roles([], 4) == {"red": 0, "green": 1, "blue": 2, "nir": 3}
    assert band_roles(["b1"], 1) == {"pan": 0}
    assert band_roles(["Blue", "Green", "Red", "NIR"], 4) == {"blue": 0, "green": 1, "red": 2, "nir": 3}
    s2 = ["b01", "b02", "b03", "b04", "b05", "b06", "b07", "b08", "b8a", "b09", "b10", "b11", "b12"]
    assert band_roles(s2, 13) == {"blue": 1, "green": 2, "red": 3, "nir": 7}


def test_vegetation_on_a_vegetated_crop_and_not_on_a_roof():
    lc = get_baseline("baseline:landcover")
    # banana plants and trees south of the central field (a strip of dirt road on the left edge)
    image, valid, gsd = _read(KAMPALA, 1120, 560, 360, 340)
    out = lc.predict(image, valid, RGB, gsd)
    assert (out[valid] == VEGETATION).mean() > 0.8  # measured 0.89
    # a tiled roof (orange) next to the central lawn
    image, valid, gsd = _read(KAMPALA, 660, 960, 160, 240)
    out = lc.predict(image, valid, RGB, gsd)
    assert (out[valid] == VEGETATION).mean() < 0.1  # measured 0.04
    assert (out[valid] == WATER).mean() == 0


def test_scale_free_and_band_order(kampala_crop):
    image, valid, gsd = kampala_crop
    lc = get_baseline("baseline:landcover")
    ref = lc.predict(image, valid, RGB, gsd)
    reflectance = image.astype(np.float32) / 255 * 0.6
    as_uint16 = image.astype(np.uint16) * 257
    for other in (reflectance, as_uint16):
        assert (lc.predict(other, valid, RGB, gsd)[valid] == ref[valid]).mean() > 0.999
    np.testing.assert_array_equal(lc.predict(image[::-1], valid, ["blue", "green", "red"], gsd), ref)


def test_water_on_landsat_sea_crop():
    # turquoise shallow sea west of the island (300 m pixels)
    image, valid, gsd = _read(LANDSAT_RGB, 400, 60, 160, 120)
    out = get_baseline("baseline:landcover").predict(image, valid, RGB, gsd)
    assert (out[valid] == WATER).mean() > 0.5  # measured 0.67 (glint and whitecaps are "land")
    assert (out[valid] == 0).sum() == 0  # no buildings looked for at 300 m


def test_water_on_dubai_chip_dark_sea():
    """Deep sea in the Dubai aerial chips is near-black and neutral, not blue: the near-black water rule."""
    from PIL import Image

    image = np.moveaxis(np.asarray(Image.open(DUBAI / "tile_3" / "images" / "image_part_001.jpg")), -1, 0)
    mask = np.asarray(Image.open(DUBAI / "tile_3" / "masks" / "image_part_001.png").convert("RGB"))
    water = (mask == (0xE2, 0xA9, 0x29)).all(-1)  # the dataset's water colour
    out = get_baseline("baseline:landcover").predict(image, np.ones(water.shape, bool), RGB, None)
    pred = out == WATER
    assert water.mean() > 0.5
    assert (pred & water).sum() / (pred | water).sum() > 0.8  # measured IoU 0.89, precision 1.0


def test_ndvi_on_sentinel2_forest():
    with rasterio.open(S2_SCENE) as src:
        image, transform = src.read(), src.transform
        bands = [d.lower() for d in src.descriptions]
        gsd = abs(src.res[0])
    lulc = gpd.read_file(S2_LULC)
    forest = rasterize(
        lulc[lulc.LULC_NAME == "forest"].geometry, out_shape=image.shape[1:], transform=transform
    )
    out = get_baseline("baseline:landcover").predict(image, np.ones(image.shape[1:], bool), bands, gsd)
    assert forest.sum() > 5000
    assert (out[forest > 0] == VEGETATION).mean() > 0.95  # measured 1.0 (NDVI ~0.75)
    assert (out == WATER).sum() == 0  # NDWI < 0 everywhere in this July scene


def test_panchromatic_landcover_predicts_no_vegetation():
    image, valid, gsd = _read(ATLANTA_PAN)
    out = get_baseline("baseline:landcover").predict(image, valid, ["pan"], gsd)
    assert (out == VEGETATION).sum() == 0  # no spectral cue: documented
    assert (out[valid] == WATER).mean() < 0.02  # forest shadow is dark and smooth; measured 0.006


def test_buildings_baseline_finds_kampala_buildings():
    image, valid, gsd = _read(KAMPALA)
    with rasterio.open(KAMPALA) as src:
        transform, crs = src.transform, src.crs
    truth = gpd.read_file(KAMPALA_BUILDINGS).to_crs(crs)
    out = get_baseline("baseline:buildings").predict(image, valid, RGB, gsd)
    pred = out == 1
    true_mask = rasterize(truth.geometry, out_shape=pred.shape, transform=transform).astype(bool)
    iou = (pred & true_mask).sum() / (pred | true_mask).sum()
    found = instance_polygons(label_instances(pred, gsd), transform, crs)
    s = object_scores(found.geometry, truth.geometry)
    # measured on the full 2048² image: pixel IoU 0.334, 61 instances, tp 13, fp 48, object F1 0.206
    assert iou > 0.2
    assert s["tp"] >= 5 and s["f1"] > 0.1
