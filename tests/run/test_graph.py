"""The task graph plan: every block depends on exactly the batches whose tiles touch it."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.inference.scene_checks import work_grid
from geoseg.io.raster import open_scene
from geoseg.models.checkpoint import read_checkpoint_meta
from geoseg.run.graph import BatchResult, BatchStats, make_plan, stitch_block
from tests.conftest import KAMPALA, LANDCOVER_MODEL, LANDSAT_RGB
from tiles import BlockAccumulator, TileGrid, Window, blend_weights


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
    from geoseg.run.graph import argmax_classes

    rng = np.random.default_rng(3)
    probs = rng.random((7, 61, 83), dtype=np.float32).astype(np.float16)  # float16: many exact ties
    probs[:, :10, :10] = 0.25
    probs[4, 20:30] = probs[2, 20:30]
    best = argmax_classes(probs)
    assert best.dtype == np.uint8 and np.array_equal(best, probs.argmax(0))


def test_stitched_block_labels_and_confidence_are_those_of_the_blended_probabilities(rng):
    """A block's labels are the argmax of the blended tile probabilities and its confidence their
    maximum x 255, computed here with the plain weighted average (BlockAccumulator.result)."""
    scene = open_scene(KAMPALA)
    grid = TileGrid(*scene.shape, 256, 64)
    block = Window(512, 256, 512, 512)
    touching = list(grid.tiles_touching(block))
    probs = {}
    for i in touching:
        p = rng.random((3, *grid[i].shape)).astype(np.float32)
        probs[i] = (p / p.sum(0)).astype(np.float16)
    valid = {i: np.ones(grid[i].shape, bool) for i in touching}
    batch = BatchResult(probs, valid, BatchStats(0, 0, 0, len(touching), len(touching), 0.0))
    res = stitch_block(0, block, block, grid, "cosine", scene, None, (2, 5, 7), True, batch)

    acc = BlockAccumulator(block, 3)
    for i in touching:
        acc.add(grid[i], probs[i], blend_weights(grid[i], *scene.shape, 64))
    blended = acc.result()
    np.testing.assert_array_equal(res.labels, np.array([2, 5, 7], np.uint8)[blended.argmax(0)])
    expected = np.rint(blended.max(0) * 255)
    assert np.abs(res.confidence.astype(int) - expected).max() <= 1
    assert 90 < res.confidence.mean() < 200  # an average of probabilities, not a weighted sum
