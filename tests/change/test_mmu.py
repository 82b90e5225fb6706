"""``geoseg run --mmu``: small regions merge into their surroundings, with the same raster and polygons
whatever the output blocks."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.features import rasterize
from skimage.measure import label

from geoseg.config import ClusterConfig, RunConfig
from geoseg.outputs.mmu import BlockSiever, sieve, sieve_core
from geoseg.run.job import run_scene
from tiles import block_windows

from ..conftest import LANDCOVER_MODEL
from .conftest import NAIP_2020, classify


def _small_regions(labels: np.ndarray, mmu_px: float) -> tuple[int, int]:
    """(regions below the MMU, of which touch nodata or the scene edge)."""
    from scipy import ndimage

    lab = label(labels, background=0, connectivity=1)
    sizes = np.bincount(lab.ravel())
    small = sizes < mmu_px
    small[0] = False
    near = ndimage.binary_dilation(labels == 0)
    touch = np.zeros(len(sizes), bool)
    touch[np.unique(lab[near & (lab > 0)])] = True
    return int(small.sum()), int((small & touch).sum())


def test_block_sieve_equals_whole_scene_sieve():
    """Real classes (NAIP 2020, landcover baseline) sieved in 96-pixel blocks with their halos == sieved
    whole, for MMUs of 3 to 20 pixels."""
    labels = classify(NAIP_2020)
    h, w = labels.shape
    for mmu_px in (3.0, 8.5, 20.0):
        whole = sieve(labels, mmu_px)
        before, after = _small_regions(labels, mmu_px), _small_regions(whole, mmu_px)
        # left small: regions cut off by nodata, and the few touching only other small regions
        assert before[0] > 100 and after[0] - after[1] <= 0.02 * before[0]  # measured <= 1.1 %
        blocks = block_windows(h, w, 96)
        siever = BlockSiever(blocks, h, w, mmu_px)
        out = np.zeros_like(labels)
        for i, b in enumerate(blocks):
            for j in siever.add(i, labels[b.slices()].copy()):
                mosaic, core = siever.window_of(j)
                siever.done(j)
                out[blocks[j].slices()] = sieve_core(mosaic, core, mmu_px)
        assert not siever.pending and not siever.labels  # every block done, nothing held
        assert np.array_equal(out, whole)


@pytest.fixture(scope="module")
def mmu_runs(tmp_path_factory, kampala_crop, dask_cluster):
    d = tmp_path_factory.mktemp("mmu")
    outs = {}
    for block in (512, 1536):  # 1536: the 1200 x 900 crop in one block
        cfg = RunConfig(
            scene=kampala_crop,
            out=d / f"b{block}",
            model=LANDCOVER_MODEL,
            block=block,
            mmu_m2=1.0,
            date="2020-01-01",
            progress=False,
            cluster=ClusterConfig(scheduler=dask_cluster.scheduler_address),
        )
        run_scene(cfg, notify=lambda m: None)
        outs[block] = cfg.out
    return outs


def test_mmu_run_is_seam_free_and_agrees_with_its_polygons(mmu_runs):
    rasters, frames = [], []
    for out in mmu_runs.values():
        with rasterio.open(out / "landcover.tif") as src:
            labels, transform = src.read(1), src.transform
        gdf = pyogrio.read_dataframe(out / "geoseg.gpkg", layer="landcover")
        burnt = rasterize(
            zip(gdf.geometry, gdf["class_id"], strict=True), out_shape=labels.shape, transform=transform
        )
        assert np.array_equal(burnt, labels)  # raster == polygons
        rasters.append(labels)
        frames.append(gdf)
        params = json.loads((out / "run.json").read_text())["properties"]["geoseg:parameters"]
        assert params["mmu_m2"] == 1.0
        mmu_px = params["mmu_pixels"]
        assert mmu_px == pytest.approx(1.0 / abs(transform.a * transform.e))
        n_small, n_touch = _small_regions(labels, mmu_px)
        assert n_small == n_touch  # below the MMU only where nodata cuts a region off
    assert np.array_equal(rasters[0], rasters[1])  # 512-pixel blocks == one block
    assert len(frames[0]) == len(frames[1])
    assert frames[0]["area_m2"].sum() == pytest.approx(frames[1]["area_m2"].sum())
