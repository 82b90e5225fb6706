"""The task graph plan: every block depends on exactly the batches whose tiles touch it."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.compat import work_grid
from geoseg.io.raster import open_scene
from geoseg.models.checkpoint import read_checkpoint_meta
from geoseg.pipeline import make_plan

from .conftest import KAMPALA, LANDCOVER_MODEL, LANDSAT_RGB


@pytest.mark.parametrize("resample", [False, True])
def test_block_dependencies_cover_touching_tiles(resample):
    scene = open_scene(KAMPALA)
    meta, _ = read_checkpoint_meta(LANDCOVER_MODEL)
    work, _ = work_grid(scene, meta, resample)
    plan = make_plan(scene, [1, 2, 3], work, tile=256, overlap=32, batch=5, block=512)
    assert sorted(t for b in plan.batches for t in b) == list(range(len(plan.grid)))
    for ww, deps in zip(plan.block_work, plan.block_deps, strict=False):
        needed = set(plan.grid.tiles_touching(ww))
        supplied = {t for bi in deps for t in plan.batches[bi]}
        assert needed <= supplied
        assert all(set(plan.batches[bi]) & needed for bi in deps)  # no batch without a needed tile
    # Batches follow the blocks: most blocks need only a few batches.
    if not resample:
        assert max(len(d) for d in plan.block_deps) <= 6


def test_work_grid_resamples_fine_imagery_and_keeps_coarse():
    meta, _ = read_checkpoint_meta(LANDCOVER_MODEL)
    kampala = open_scene(KAMPALA)
    work, notice = work_grid(kampala, meta, True)
    assert work is not None and "differs" in notice
    assert abs(work.resolution.x) == pytest.approx(meta.gsd_m, rel=0.05)
    assert work.extent.boundingbox.left == pytest.approx(kampala.geobox.extent.boundingbox.left)
    assert work_grid(kampala, meta, False) == (None, None)
    coarse, note = work_grid(open_scene(LANDSAT_RGB), meta, True)
    assert coarse is None and "coarser" in note


def test_argmax_classes_equals_numpy_argmax_with_ties() -> None:
    from geoseg.pipeline import argmax_classes

    rng = np.random.default_rng(3)
    probs = rng.random((7, 61, 83), dtype=np.float32).astype(np.float16)  # float16: many exact ties
    probs[:, :10, :10] = 0.25
    probs[4, 20:30] = probs[2, 20:30]
    best = argmax_classes(probs)
    assert best.dtype == np.uint8 and np.array_equal(best, probs.argmax(0))
