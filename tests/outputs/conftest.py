"""Real rasters for the output-writer tests: a land-cover reference mask, classes derived from imagery."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

ROOT = Path(__file__).resolve().parents[2]
KAMPALA = ROOT / "data" / "samples" / "kampala_oam_west.tif"
KAMPALA_BUILDINGS = ROOT / "data" / "samples" / "kampala_oam_west_buildings.geojson"
ALBERS = ROOT / "data" / "samples" / "landsat_albers_customproj.tif"
LULC = ROOT / "data" / "samples" / "eolearn_series" / "eolearn_lulc_mask.tif"
NEBRASKA = ROOT / "data" / "samples" / "landsat5_nebraska_wgs84_window.tif"

LULC_NAMES = {1: "cultivated", 2: "forest", 3: "grassland", 4: "shrubland", 8: "artificial"}
LULC_COLORS = {1: "#ffff00", 2: "#054907", 3: "#ffa500", 4: "#806000", 8: "#dc0000"}


@dataclass
class ClassRaster:
    labels: np.ndarray
    transform: Affine
    crs: CRS
    nodata: int | None


def quantize(band: np.ndarray, valid: np.ndarray, n: int = 4, smooth: int = 0) -> np.ndarray:
    """Classes 1..n from quantiles of a (box-smoothed) band; 0 where not ``valid``."""
    x = band.astype(np.float64)
    if smooth:
        k = 2 * smooth + 1
        c = np.pad(np.cumsum(np.cumsum(np.pad(x, smooth, mode="edge"), 0), 1), ((1, 0), (1, 0)))
        x = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
    edges = np.percentile(x[valid], np.linspace(0, 100, n + 1)[1:-1])
    out = (np.digitize(x, edges) + 1).astype(np.uint8)
    out[~valid] = 0
    return out


@pytest.fixture(scope="session")
def lulc() -> ClassRaster:
    """eo-learn's land-cover reference mask (Slovenia, EPSG:32633, 100x101, nodata 0)."""
    with rasterio.open(LULC) as src:
        return ClassRaster(src.read(1), src.transform, src.crs, int(src.nodata))


@pytest.fixture(scope="session")
def kampala_classes() -> ClassRaster:
    """4 classes from the green band of the Kampala aerial image (EPSG:3857), 1500x1500, nodata 0 where the
    image is nodata, lightly smoothed like a model's output."""
    with rasterio.open(KAMPALA) as src:
        win = rasterio.windows.Window(300, 200, 1500, 1500)
        rgb = src.read(window=win)
        transform, crs = src.window_transform(win), src.crs
    valid = (rgb != 0).any(axis=0)
    return ClassRaster(quantize(rgb[1], valid, smooth=2), transform, crs, 0)


@pytest.fixture(scope="session")
def nebraska_classes() -> ClassRaster:
    """3 classes from a 400x400 window of the Landsat 5 Nebraska scene in EPSG:4326 (nodata -9999 -> 0)."""
    with rasterio.open(NEBRASKA) as src:
        band = src.read(1)
        transform, crs = src.transform, src.crs
    return ClassRaster(quantize(band, band != -9999, n=3, smooth=3), transform, crs, 0)
