"""Window reads: per-thread cached handles and the validity mask computed from the pixels read."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window as RioWindow

from geoseg.io import raster
from geoseg.io.raster import read_valid_mask, read_window
from tests.conftest import ALBERS_INT16, ATLANTA_PAN, KAMPALA, LANDSAT_RGB, S2_SCENE
from tiles import Window


def gdal_mask(path: Path, w: Window) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.dataset_mask(window=RioWindow(w.col_off, w.row_off, w.width, w.height)) > 0


def write_scene(path: Path, data: np.ndarray, **profile) -> Path:
    c, h, w = data.shape
    profile = {
        "driver": "GTiff",
        "count": c,
        "height": h,
        "width": w,
        "dtype": data.dtype,
        "crs": "EPSG:32636",
        "transform": rasterio.Affine(1, 0, 5e5, 0, -1, 1e4),
    } | profile
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.mark.parametrize("path", [KAMPALA, LANDSAT_RGB, ATLANTA_PAN, S2_SCENE, ALBERS_INT16])
def test_validity_equals_gdal_dataset_mask_on_samples(path: Path) -> None:
    with rasterio.open(path) as src:
        h, w, n = src.height, src.width, src.count
    for win in (
        Window(0, 0, min(h, 300), min(w, 400)),
        Window(h // 3, w // 4, min(h - h // 3, 257), min(w - w // 4, 190)),
    ):
        data, valid = read_window(path, win, list(range(1, n + 1)))
        assert data.shape == (n, win.height, win.width)
        assert np.array_equal(valid, gdal_mask(path, win))
        assert np.array_equal(read_valid_mask(path, win), valid)


@pytest.mark.parametrize(
    ("dtype", "nodata", "fill"),
    [("uint8", 0, 0), ("int16", -9999, -9999), ("float32", float("nan"), float("nan")), ("int16", 0.5, 0)],
)
def test_validity_from_data_follows_gdal(tmp_path: Path, dtype: str, nodata: float, fill: float) -> None:
    """Nodata in every band = invalid; in some bands only = valid; a nodata the type cannot hold: as GDAL."""
    rng = np.random.default_rng(0)
    data = rng.integers(1, 200, (3, 64, 80)).astype(dtype)
    data[:, :10] = fill  # every band
    data[0, 20:30] = fill  # one band only
    path = write_scene(tmp_path / "s.tif", data, nodata=nodata)
    win = Window(0, 0, 64, 80)
    _, valid = read_window(path, win, [1, 2, 3])
    assert np.array_equal(valid, gdal_mask(path, win))
    _, subset = read_window(path, win, [2])  # a band subset: GDAL's mask over all bands still decides
    assert np.array_equal(subset, valid)


def test_alpha_band_decides(tmp_path: Path) -> None:
    data = np.full((4, 32, 32), 90, np.uint8)
    data[3, :, :16] = 0  # alpha: left half transparent
    path = write_scene(tmp_path / "a.tif", data, photometric="RGB", alpha="YES")
    _data3, valid = read_window(path, Window(0, 0, 32, 32), [1, 2, 3, 4])
    assert not valid[:, :16].any() and valid[:, 16:].all()


def test_handles_are_per_thread_and_reopened_when_the_file_changes(tmp_path: Path) -> None:
    path = write_scene(tmp_path / "c.tif", np.full((1, 16, 16), 7, np.uint8))
    assert read_window(path, Window(0, 0, 4, 4), [1])[0].max() == 7
    mine = set(map(id, raster._handles.open.values()))
    seen: list[set[int]] = []
    t = threading.Thread(
        target=lambda: (
            read_window(path, Window(0, 0, 4, 4), [1]),
            seen.append(set(map(id, raster._handles.open.values()))),
        )
    )
    t.start()
    t.join()
    assert seen and not (seen[0] & mine)
    write_scene(path, np.full((1, 16, 16), 9, np.uint8), nodata=0)
    assert read_window(path, Window(0, 0, 4, 4), [1])[0].max() == 9
    assert len(raster._handles.open) <= raster.MAX_OPEN_PER_THREAD
