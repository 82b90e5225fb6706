"""Shared fixtures: real sample scenes, the bundled model, and a real Dask cluster."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
KAMPALA = SAMPLES / "kampala_oam_west.tif"
KAMPALA_BUILDINGS = SAMPLES / "kampala_oam_west_buildings.geojson"
LANDSAT_RGB = SAMPLES / "landsat7_RGB.byte.tif"
ATLANTA_PAN = SAMPLES / "spacenet4_atlanta_pan.tif"
ATLANTA_BUILDINGS = SAMPLES / "spacenet4_atlanta_buildings.geojson"
S2_SCENE = SAMPLES / "eolearn_series" / "eolearn_s2l1c_20150711.tif"
S2_LULC = SAMPLES / "eolearn_lulc.gpkg"
ALBERS_INT16 = SAMPLES / "landsat_albers_customproj.tif"
DUBAI = ROOT / "data" / "training" / "dubai_aerial"
LANDCOVER_MODEL = ROOT / "geoseg" / "checkpoints" / "landcover_rgb.pt"
BUILDINGS_MODEL = ROOT / "geoseg" / "checkpoints" / "buildings_rgb.pt"


def few_chips(root, per_tile: int = 2):
    """A chip folder with the first chips of two Dubai tiles (linked, not copied)."""
    for tile in ("tile_1", "tile_3"):
        for sub in ("images", "masks"):
            (root / tile / sub).mkdir(parents=True)
            for src in sorted((DUBAI / tile / sub).iterdir())[:per_tile]:
                (root / tile / sub / src.name).symlink_to(src)
    return root


def crop_geotiff(
    src_path: Path, dst_path: Path, row: int, col: int, height: int, width: int, **profile
) -> Path:
    """Write a window of a real scene as its own GeoTIFF (exact georeferencing of that window)."""
    with rasterio.open(src_path) as src:
        win = Window(col, row, width, height)
        data = src.read(window=win)
        prof = src.profile | {"height": height, "width": width, "transform": src.window_transform(win)}
        prof.update(profile)
    with rasterio.open(dst_path, "w", **prof) as dst:
        dst.write(data)
    return dst_path


@pytest.fixture(scope="session")
def kampala_crop(tmp_path_factory) -> Path:
    """A 1200x900 window of the Kampala scene (real imagery, not tile-aligned)."""
    return crop_geotiff(KAMPALA, tmp_path_factory.mktemp("scenes") / "kampala_crop.tif", 300, 500, 900, 1200)


@pytest.fixture(scope="session")
def kampala_15cm(tmp_path_factory) -> Path:
    """The Kampala sample averaged to 15 cm (1024x1024): inside the bundled model's GSD range."""
    dst_path = tmp_path_factory.mktemp("scenes") / "kampala_15cm.tif"
    with rasterio.open(KAMPALA) as src:
        data = src.read(out_shape=(src.count, 1024, 1024), resampling=Resampling.average)
        transform = src.transform * Affine.scale(src.width / 1024, src.height / 1024)
        profile = src.profile | {"width": 1024, "height": 1024, "transform": transform}
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)
    return dst_path


@pytest.fixture(scope="session")
def dask_cluster():
    """A real LocalCluster (scheduler + worker processes) shared by the pipeline tests."""
    import dask
    from distributed import LocalCluster

    from geoseg.config import ClusterConfig
    from geoseg.run.cluster import worker_environ

    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(ClusterConfig())}):
        cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None)
    yield cluster
    cluster.close()


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


needs_qgis = pytest.mark.skipif(
    not Path("/usr/bin/qgis").exists(), reason="QGIS (Debian qgis + python3-qgis) not installed"
)


def open_in_qgis(out: Path, tmp_path: Path) -> tuple[list[dict], Path]:
    """Open every output of ``out`` in headless QGIS; one info dict per layer and a rendered PNG."""
    png = tmp_path / "render.png"
    env = os.environ | {"QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp_path)}
    res = subprocess.run(
        ["/usr/bin/python3", str(Path(__file__).parent / "qgis_open.py"), str(out), str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")], png
