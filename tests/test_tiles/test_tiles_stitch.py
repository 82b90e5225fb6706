"""Blend weights and stitching: positive weights that normalise to 1, identity tiles stitched back exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiles import (
    BLEND_KINDS,
    WEIGHT_FLOOR,
    BlendError,
    BlockAccumulator,
    StitchError,
    TileGrid,
    Window,
    blend_weights,
    block_windows,
    stitch,
)

from .strategies import grids

SETTINGS = settings(max_examples=100, deadline=None, database=None)


@st.composite
def partitions(draw, height: int, width: int, max_cuts: int = 5) -> list[Window]:
    """An irregular partition of the scene into rectangles, cut at arbitrary rows and columns."""

    def cuts(size: int) -> list[int]:
        inner = draw(st.sets(st.integers(1, size - 1), max_size=max_cuts)) if size > 1 else set()
        return [0, *sorted(inner), size]

    rows, cols = cuts(height), cuts(width)
    return [
        Window(r0, c0, r1 - r0, c1 - c0)
        for r0, r1 in itertools.pairwise(rows)
        for c0, c1 in itertools.pairwise(cols)
    ]


def scene_weight_sum(grid: TileGrid, kind: str) -> np.ndarray:
    total = np.zeros((grid.height, grid.width))
    for window in grid:
        total[window.slices()] += blend_weights(window, grid.height, grid.width, grid.overlap, kind)
    return total


@SETTINGS
@given(
    scene=st.tuples(st.integers(1, 600), st.integers(1, 600)),
    kind=st.sampled_from(BLEND_KINDS),
    data=st.data(),
)
def test_weights_are_positive_and_at_most_one(scene, kind, data):
    height, width = scene
    row_off = data.draw(st.integers(0, height - 1))
    col_off = data.draw(st.integers(0, width - 1))
    window = Window(
        row_off,
        col_off,
        data.draw(st.integers(1, height - row_off)),
        data.draw(st.integers(1, width - col_off)),
    )
    overlap = data.draw(st.integers(0, 600))
    weights = blend_weights(window, height, width, overlap, kind)
    assert weights.dtype == np.float32
    assert weights.shape == window.shape
    assert (weights > 0).all()
    assert (weights <= 1).all()
    assert weights.min() >= np.float32(WEIGHT_FLOOR**2) * (1 - 1e-6)


@SETTINGS
@given(grid=grids(max_size=400, max_per_axis=8), kind=st.sampled_from(BLEND_KINDS))
def test_normalised_weights_sum_to_one_everywhere(grid, kind):
    total = scene_weight_sum(grid, kind)
    assert (total > 0).all()
    normalised = np.zeros_like(total)
    for window in grid:
        weights = blend_weights(window, grid.height, grid.width, grid.overlap, kind)
        normalised[window.slices()] += weights / total[window.slices()]
    np.testing.assert_allclose(normalised, 1.0, rtol=1e-12)

    accumulator = BlockAccumulator(Window(0, 0, grid.height, grid.width), channels=1, dtype=np.float64)
    for window in grid:
        weights = blend_weights(window, grid.height, grid.width, grid.overlap, kind)
        accumulator.add(window, np.ones((1, *window.shape)), weights)
    assert accumulator.covered.all()
    np.testing.assert_allclose(accumulator.weight_sum, total, rtol=1e-12)
    np.testing.assert_allclose(accumulator.result(), 1.0, rtol=1e-12)


@SETTINGS
@given(
    grid=grids(max_size=300, max_per_axis=10),
    channels=st.integers(1, 3),
    kind=st.sampled_from(BLEND_KINDS),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_identity_tiles_stitch_back_exactly(grid, channels, kind, seed, data):
    blocks = data.draw(partitions(grid.height, grid.width), label="blocks")
    scene = np.random.default_rng(seed).standard_normal((channels, grid.height, grid.width))
    out = np.full_like(scene, np.nan)
    for block in blocks:
        accumulator = BlockAccumulator(block, channels, dtype=np.float64)
        for index in grid.tiles_touching(block):
            window = grid[index]
            weights = blend_weights(window, grid.height, grid.width, grid.overlap, kind)
            accumulator.add(window, scene[(slice(None), *window.slices())], weights)
        assert accumulator.covered.all()
        out[(slice(None), *block.slices())] = accumulator.result()
    np.testing.assert_allclose(out, scene, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(
    grid=grids(max_size=300, max_per_axis=10),
    kind=st.sampled_from(BLEND_KINDS),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_stitch_reconstructs_float32_identity_over_blocks(grid, kind, seed, data):
    block_size = data.draw(st.integers(max(1, max(grid.height, grid.width) // 6), 512), label="block")
    scene = np.random.default_rng(seed).standard_normal((2, grid.height, grid.width)).astype(np.float32)
    tile_values = {i: scene[(slice(None), *window.slices())] for i, window in enumerate(grid)}
    out = np.full_like(scene, np.nan)
    for block in block_windows(grid.height, grid.width, block_size):
        result = stitch(grid, block, tile_values, kind=kind)
        assert result.dtype == np.float32
        out[(slice(None), *block.slices())] = result
    np.testing.assert_allclose(out, scene, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@given(tile=st.integers(2, 512), data=st.data())
@settings(SETTINGS, max_examples=50)
def test_regular_neighbours_ramps_are_complementary(kind, tile, data):
    overlap = data.draw(st.integers(1, tile // 2))
    stride = tile - overlap
    width = 2 * stride + tile  # the middle tile has interior neighbours on both sides
    left = blend_weights(Window(0, stride, 1, tile), 1, width, overlap, kind)[0]
    right = blend_weights(Window(0, 2 * stride, 1, tile), 1, width, overlap, kind)[0]
    np.testing.assert_allclose(left[stride:] + right[:overlap], 1 + WEIGHT_FLOOR, rtol=1e-6)


def test_profile_ramps_only_on_interior_sides():
    # A one-row scene: the row profile is flat, so the weights are the column profile.
    inner = blend_weights(Window(0, 20, 1, 40), 1, 100, 10, "linear")[0]
    assert (np.diff(inner[:10]) > 0).all()
    assert (inner[10:30] == 1).all()
    np.testing.assert_allclose(inner[30:], inner[:10][::-1])
    assert 0 < inner[0] < 0.1
    at_left_edge = blend_weights(Window(0, 0, 1, 40), 1, 100, 10, "cosine")[0]
    assert (at_left_edge[:30] == 1).all()
    assert (np.diff(at_left_edge[30:]) < 0).all()
    assert (blend_weights(Window(0, 0, 1, 100), 1, 100, 10, "cosine") == 1).all()


@pytest.mark.parametrize("kind", BLEND_KINDS)
def test_no_overlap_or_constant_gives_ones(kind):
    window = Window(10, 10, 32, 32)
    assert (blend_weights(window, 100, 100, 0, kind) == 1).all()
    assert (blend_weights(window, 100, 100, 8, "constant") == 1).all()


def test_weights_are_shared_read_only_arrays():
    """Tiles of one shape and edge situation share one cached array, which nobody can change."""
    window = Window(10, 10, 32, 32)
    weights = blend_weights(window, 100, 100, 8)
    with pytest.raises(ValueError, match="read-only"):
        weights[:] = -1
    assert blend_weights(Window(40, 50, 32, 32), 100, 100, 8) is weights  # also interior
    assert blend_weights(Window(0, 50, 32, 32), 100, 100, 8) is not weights  # top edge: not ramped


@pytest.mark.parametrize(
    ("window", "overlap", "kind"),
    [
        (Window(0, 0, 10, 10), 4, "gaussian"),
        (Window(0, 0, 10, 10), -1, "cosine"),
        (Window(-1, 0, 10, 10), 4, "cosine"),
        (Window(0, 95, 10, 10), 4, "linear"),
    ],
)
def test_invalid_blend_arguments(window, overlap, kind):
    with pytest.raises(BlendError):
        blend_weights(window, 100, 100, overlap, kind)
    assert issubclass(BlendError, ValueError)


def test_accumulator_ignores_tiles_outside_the_block_and_fills_gaps():
    block = Window(100, 100, 50, 50)
    accumulator = BlockAccumulator(block, channels=2)
    accumulator.add(Window(0, 0, 100, 100), np.ones((2, 100, 100)), np.ones((100, 100)))
    assert not accumulator.covered.any()
    accumulator.add(Window(120, 80, 10, 40), np.full((2, 10, 40), 3.0), np.full((10, 40), 0.5))
    result = accumulator.result(fill=np.nan)
    assert result.shape == (2, 50, 50)
    assert result.dtype == np.float32
    assert (result[:, 20:30, :20] == 3).all()
    assert accumulator.covered.sum() == 10 * 20
    assert np.isnan(result[:, ~accumulator.covered]).all()
    with pytest.raises(ValueError, match="read-only"):
        accumulator.weight_sum[0, 0] = 1


def test_argmax_of_weighted_sums_is_the_argmax_of_the_blend():
    grid = TileGrid(300, 260, 96, 24)
    block = Window(64, 32, 128, 160)
    rng = np.random.default_rng(7)
    accumulator = BlockAccumulator(block, channels=4)
    for i in grid.tiles_touching(block):
        w = grid[i]
        accumulator.add(w, rng.random((4, *w.shape)), blend_weights(w, 300, 260, 24))
    blended = accumulator.result()
    sums = accumulator.weighted_sum
    np.testing.assert_array_equal(sums.argmax(0), blended.argmax(0))
    np.testing.assert_allclose(sums / accumulator.weight_sum, blended, rtol=1e-6)
    with pytest.raises(ValueError, match="read-only"):
        sums[0, 0, 0] = 1


@pytest.mark.parametrize(
    ("values_shape", "weights_shape"),
    [((2, 10, 10), (10, 11)), ((3, 10, 10), (10, 10)), ((2, 10, 9), (10, 10)), ((10, 10), (10, 10))],
)
def test_accumulator_rejects_mismatched_shapes(values_shape, weights_shape):
    accumulator = BlockAccumulator(Window(0, 0, 20, 20), channels=2)
    with pytest.raises(StitchError):
        accumulator.add(Window(0, 0, 10, 10), np.ones(values_shape), np.ones(weights_shape))


def test_accumulator_rejects_no_channels():
    with pytest.raises(StitchError):
        BlockAccumulator(Window(0, 0, 20, 20), channels=0)


def test_stitch_errors_and_dtypes():
    grid = TileGrid(100, 100, 64, 16)
    block = Window(0, 0, 100, 100)
    with pytest.raises(StitchError):
        stitch(grid, block, {})
    with pytest.raises(BlendError):
        stitch(grid, block, {0: np.ones((1, 64, 64))}, kind="median")
    with pytest.raises(StitchError):
        stitch(grid, block, {0: np.ones((64, 64))})
    with pytest.raises(IndexError):
        stitch(grid, block, {len(grid): np.ones((1, 64, 64))})
    assert stitch(grid, block, {0: np.ones((1, 64, 64), np.uint8)}).dtype == np.float32
    assert stitch(grid, block, {0: np.ones((1, 64, 64), np.int64)}).dtype == np.float64
    partial = stitch(grid, block, {0: np.full((1, 64, 64), 7.0)}, fill=-1)
    assert (partial[0, :64, :64] == 7).all()
    assert (partial[0, 64:, :] == -1).all()
