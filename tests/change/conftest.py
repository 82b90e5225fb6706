"""Run folders of real imagery for the change tests, classified without a model (the NDVI/NDWI rules
of ``baseline:landcover`` on NAIP's NIR band) and written through ``geoseg.change.runs.write_run_folder``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from odc.geo.geobox import GeoBox

from geoseg.change.runs import ClassDef, write_run_folder
from geoseg.inference.baseline import LandcoverBaseline

from ..conftest import ROOT

NAIP = ROOT / "data" / "samples" / "naip"
NAIP_2009 = NAIP / "m_4709963_se_14_1_20090818.tif"
NAIP_2020 = NAIP / "m_4709963_se_14_1_20200831.tif"
CLASSES = [ClassDef(c.id, c.name, c.color) for c in LandcoverBaseline().classes]


def classify(scene: Path) -> np.ndarray:
    """Class ids of a 4-band (R, G, B, NIR) scene from the landcover baseline (0 where no data)."""
    base = LandcoverBaseline()
    with rasterio.open(scene) as src:
        img = src.read()
        valid = src.read_masks(1) > 0
        gsd = abs(src.transform.a)
    idx = base.predict(img, valid, ["red", "green", "blue", "nir"], gsd)
    ids = np.array([c.id for c in base.classes], np.uint8)[idx]
    return np.where(valid, ids, 0).astype(np.uint8)


def baseline_run(scene: Path, out: Path, date: dt.date | None) -> Path:
    with rasterio.open(scene) as src:
        geobox = GeoBox.from_rio(src)
    return write_run_folder(
        out,
        array=classify(scene),
        geobox=geobox,
        classes=CLASSES,
        date=date,
        model_id="baseline:landcover",
        source=scene,
    )


def shifted_copy(scene: Path, out: Path, dx_m: float, dy_m: float, data: np.ndarray | None = None) -> Path:
    """The scene's pixels (or ``data``) georeferenced ``dx_m``, ``dy_m`` metres away."""
    with rasterio.open(scene) as src:
        profile = src.profile
        arr = src.read() if data is None else data
        t = src.transform
    profile["transform"] = rasterio.Affine(t.a, t.b, t.c + dx_m, t.d, t.e, t.f + dy_m)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(arr)
    return out


@pytest.fixture(scope="session")
def naip_runs(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("naip_runs")
    return (
        baseline_run(NAIP_2009, d / "2009", dt.date(2009, 8, 18)),
        baseline_run(NAIP_2020, d / "2020", dt.date(2020, 8, 31)),
    )


S2 = ROOT / "data" / "samples" / "eolearn_series"
S2_CLOUDS = S2 / "eolearn_cloudmask_timeseries.tif"


def s2_run(date: str, out: Path) -> Path:
    """A landcover-baseline run folder of one eo-learn Sentinel-2 date (13 named bands, 10 m)."""
    scene = S2 / f"eolearn_s2l1c_{date.replace('-', '')}.tif"
    base = LandcoverBaseline()
    with rasterio.open(scene) as src:
        img, names, geobox = src.read(), list(src.descriptions), GeoBox.from_rio(src)
    valid = np.isfinite(img).all(0)
    ids = np.array([c.id for c in base.classes], np.uint8)[base.predict(img, valid, names, 10.0)]
    return write_run_folder(
        out,
        array=np.where(valid, ids, 0).astype(np.uint8),
        geobox=geobox,
        classes=CLASSES,
        date=dt.date.fromisoformat(date),
        model_id="baseline:landcover",
        source=scene,
    )
