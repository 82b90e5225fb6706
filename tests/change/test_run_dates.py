"""What makes runs comparable: acquisition dates, unique STAC ids, relative hrefs, class names for GIS,
and the optional confidence raster."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pystac
import pytest
import rasterio

from geoseg.config import ClusterConfig, RunConfig
from geoseg.io.dates import acquisition_date, date_from_name
from geoseg.run.job import run_scene

from ..conftest import LANDCOVER_MODEL, crop_geotiff
from .conftest import NAIP_2009


def test_date_from_file_name_tags_or_override(tmp_path):
    assert acquisition_date(NAIP_2009) == (dt.date(2009, 8, 18), "file name")
    assert date_from_name("S2A_2015-07-11_T32.tif") == dt.date(2015, 7, 11)
    assert date_from_name("scene_123456789.tif") is None  # digits of a longer number are no date
    assert date_from_name("LC08_L2SP_016035_20200915_02_T1.tif") == dt.date(2020, 9, 15)
    assert date_from_name(
        "tile_15.07.2011.tif", r"(?P<day>\d\d)\.(?P<month>\d\d)\.(?P<year>\d{4})"
    ) == dt.date(2011, 7, 15)
    tagged = crop_geotiff(NAIP_2009, tmp_path / "no_date_in_name.tif", 0, 0, 64, 64)
    assert acquisition_date(tagged) == (None, "unknown")
    with rasterio.open(tagged, "r+") as dst:
        dst.update_tags(ACQUISITIONDATE="2016:05:04 10:31:00")
    assert acquisition_date(tagged) == (dt.date(2016, 5, 4), "metadata tag ACQUISITIONDATE")
    assert acquisition_date(tagged, dt.date(2001, 1, 2))[0] == dt.date(2001, 1, 2)


@pytest.fixture(scope="module")
def naip_model_run(tmp_path_factory, dask_cluster):
    """The bundled land-cover model on a NAIP crop (RGB of the 4 bands, at the scene's 5 m)."""
    d = tmp_path_factory.mktemp("naip_model")
    scene = crop_geotiff(NAIP_2009, d / "m_4709963_se_14_1_20090818.tif", 100, 100, 300, 400)
    out = d / "run"
    notes: list[str] = []
    cfg = RunConfig(
        scene=scene,
        out=out,
        model=LANDCOVER_MODEL,
        bands=[1, 2, 3],
        resample=False,
        tile=256,
        overlap=32,
        confidence=True,
        progress=False,
        cluster=ClusterConfig(scheduler=dask_cluster.scheduler_address),
    )
    run_scene(cfg, notify=notes.append)
    undated = crop_geotiff(NAIP_2009, d / "naip_crop.tif", 100, 100, 300, 400)
    out2 = d / "undated"
    run_scene(cfg.model_copy(update={"scene": undated, "out": out2}), notify=notes.append)
    return out, out2, notes


def test_run_json_describes_the_acquisition(naip_model_run):
    out, undated, notes = naip_model_run
    item = pystac.Item.from_file(str(out / "run.json"))
    raw = json.loads((out / "run.json").read_text())
    assert raw["properties"]["datetime"] == "2009-08-18T00:00:00Z"
    assert raw["properties"]["geoseg:date_source"] == "file name"
    assert (
        raw["properties"]["geoseg:processed"]["finished"] >= raw["properties"]["geoseg:processed"]["started"]
    )
    fp = raw["properties"]["geoseg:fingerprint"]
    assert item.id == f"m_4709963_se_14_1_20090818-2009-08-18-landcover-{fp[:8]}"
    assert all(not a["href"].startswith("/") for a in raw["assets"].values())
    assert (out / raw["assets"]["source"]["href"]).resolve().name == "m_4709963_se_14_1_20090818.tif"
    classes = raw["assets"]["landcover"]["classification:classes"]
    assert [c["title"] for c in classes] == ["building", "land", "road", "vegetation", "water"]
    assert raw["assets"]["landcover"]["raster:bands"][0]["data_type"] == "uint8"
    # no date anywhere: STAC's null datetime with start/end, and the user is told
    u = json.loads((undated / "run.json").read_text())
    assert u["properties"]["datetime"] is None and u["properties"]["start_datetime"]
    assert "-undated-landcover-" in u["id"]
    assert any("no acquisition date" in n for n in notes)


def test_class_names_and_confidence_for_gis(naip_model_run):
    out, _, _ = naip_model_run
    cats = [c.text for c in ET.parse(out / "landcover.tif.aux.xml").iter("Category")]
    assert cats == ["nodata", "building", "land", "road", "vegetation", "water"]
    with rasterio.open(out / "landcover.tif") as lc:
        assert json.loads(lc.tags()["CLASS_NAMES"])["5"] == "water" and lc.colormap(1)[5][:3] == (
            49,
            130,
            206,
        )
        labels = lc.read(1)
    if shutil.which("gdalinfo"):
        info = subprocess.run(["gdalinfo", str(out / "landcover.tif")], capture_output=True, text=True).stdout
        assert "vegetation" in info and "Categories" in info
    with rasterio.open(out / "confidence.tif") as c:
        conf = c.read(1)
        assert c.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and c.dtypes[0] == "uint8"
    valid = labels > 0
    assert conf[valid].min() >= 255 // 5 - 1  # the winning class of 5 has at least a fifth
    assert conf[valid].max() > 200
