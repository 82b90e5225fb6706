"""Properties of TileGrid (edge policy "shift"), tiles_touching and block_windows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiles import TileGrid, TileGridError, Window, block_windows

from .strategies import grids

SETTINGS = settings(max_examples=150, deadline=None, database=None)


def coverage_counts(windows: list[Window], height: int, width: int) -> np.ndarray:
    """How many windows cover each cell of the scene cut along every window edge.

    The cells partition the scene and all pixels of a cell are covered by the same windows, so the
    per-cell counts are the per-pixel counts without a scene-sized array.
    """
    row_offs = np.array([w.row_off for w in windows])
    row_stops = np.array([w.row_stop for w in windows])
    col_offs = np.array([w.col_off for w in windows])
    col_stops = np.array([w.col_stop for w in windows])
    rows = np.unique(np.concatenate([[0, height], row_offs, row_stops]))
    cols = np.unique(np.concatenate([[0, width], col_offs, col_stops]))
    r0, r1 = np.searchsorted(rows, row_offs), np.searchsorted(rows, row_stops)
    c0, c1 = np.searchsorted(cols, col_offs), np.searchsorted(cols, col_stops)
    diff = np.zeros((len(rows), len(cols)), dtype=np.int64)
    for r, c, sign in ((r0, c0, 1), (r0, c1, -1), (r1, c0, -1), (r1, c1, 1)):
        np.add.at(diff, (r, c), sign)
    return diff.cumsum(axis=0).cumsum(axis=1)[:-1, :-1]


def pixel_counts(windows: list[Window], height: int, width: int) -> np.ndarray:
    counts = np.zeros((height, width), dtype=np.int64)
    for window in windows:
        counts[window.slices()] += 1
    return counts


@SETTINGS
@given(size=st.integers(1, 3000), tile=st.integers(16, 512), data=st.data())
def test_axis_offsets_cover_the_axis_with_full_tiles(size, tile, data):
    overlap = data.draw(st.integers(0, tile - 1), label="overlap")
    grid = TileGrid(size, 1, tile, overlap)
    offsets = grid.row_offsets
    extent = grid.tile_shape[0]
    assert extent == min(tile, size)
    assert offsets[0] == 0
    assert offsets[-1] + extent == size
    assert all(0 <= off and off + extent <= size for off in offsets)
    # Strictly increasing (no duplicates), gaps of at most one stride: neighbours overlap enough.
    gaps = np.diff(offsets)
    assert (gaps > 0).all()
    assert (gaps <= grid.stride).all()
    assert (gaps[:-1] == grid.stride).all()
    assert all(prev + extent - nxt >= overlap for prev, nxt in itertools.pairwise(offsets))
    if size <= tile:
        assert offsets == (0,)


@SETTINGS
@given(grid=grids())
def test_windows_cover_the_scene_inside_it(grid):
    windows = grid.windows()
    assert len(windows) == len(grid) == grid.n_rows * grid.n_cols
    assert len(set(windows)) == len(windows)
    scene = Window(0, 0, grid.height, grid.width)
    assert all(w.intersection(scene) == w for w in windows)
    assert coverage_counts(windows, grid.height, grid.width).min() >= 1


@SETTINGS
@given(grid=grids(max_size=250, max_per_axis=12))
def test_every_pixel_is_covered(grid):
    assert pixel_counts(grid.windows(), grid.height, grid.width).min() >= 1


@SETTINGS
@given(grid=grids())
def test_tiles_are_full_size_where_the_scene_allows(grid):
    for window in grid:
        assert window.height == (grid.tile if grid.height >= grid.tile else grid.height)
        assert window.width == (grid.tile if grid.width >= grid.tile else grid.width)


@SETTINGS
@given(grid=grids())
def test_windows_are_raster_order_and_neighbours_overlap(grid):
    windows = grid.windows()
    assert windows == [
        Window(r, c, *grid.tile_shape) for r, c in itertools.product(grid.row_offsets, grid.col_offsets)
    ]
    assert [grid[i] for i in range(len(grid))] == windows
    assert grid[-1] == windows[-1]
    for i, window in enumerate(windows):
        if (i + 1) % grid.n_cols:
            right = windows[i + 1]
            assert right.row_off == window.row_off
            assert window.col_stop - right.col_off >= grid.overlap
        if i + grid.n_cols < len(windows):
            below = windows[i + grid.n_cols]
            assert below.col_off == window.col_off
            assert window.row_stop - below.row_off >= grid.overlap


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap", "rows", "cols"),
    [
        (1000, 700, 256, 32, (0, 224, 448, 672, 744), (0, 224, 444)),
        (512, 512, 512, 64, (0,), (0,)),
        (100, 1000, 512, 64, (0,), (0, 448, 488)),
        (513, 10, 512, 0, (0, 1), (0,)),
    ],
)
def test_known_grids(height, width, tile, overlap, rows, cols):
    grid = TileGrid(height, width, tile, overlap)
    assert grid.row_offsets == rows
    assert grid.col_offsets == cols
    assert grid.tile_shape == (min(tile, height), min(tile, width))


@SETTINGS
@given(
    grid=grids(max_per_axis=25),
    row_off=st.integers(-600, 3100),
    col_off=st.integers(-600, 3100),
    height=st.integers(1, 1500),
    width=st.integers(1, 1500),
)
def test_tiles_touching_matches_brute_force(grid, row_off, col_off, height, width):
    block = Window(row_off, col_off, height, width)
    expected = [i for i, window in enumerate(grid) if window.intersection(block) is not None]
    assert grid.tiles_touching(block) == expected


def test_tiles_touching_is_fast_on_a_huge_grid():
    grid = TileGrid(200_000, 200_000, 512, 64)
    assert len(grid) > 100_000
    block = Window(100_000, 50_000, 2048, 2048)
    touching = grid.tiles_touching(block)
    assert 16 <= len(touching) <= 36
    assert all(grid[i].intersection(block) is not None for i in touching)


@SETTINGS
@given(height=st.integers(1, 3000), width=st.integers(1, 3000), data=st.data())
def test_block_windows_partition_the_scene(height, width, data):
    block = data.draw(st.integers(max(1, max(height, width) // 40), 4096), label="block")
    windows = block_windows(height, width, block)
    assert sum(w.height * w.width for w in windows) == height * width
    assert (coverage_counts(windows, height, width) == 1).all()
    assert windows == sorted(windows, key=lambda w: (w.row_off, w.col_off))
    assert all(w.height <= block and w.width <= block for w in windows)


@SETTINGS
@given(height=st.integers(1, 200), width=st.integers(1, 200), block=st.integers(1, 250))
def test_block_windows_cover_every_pixel_once(height, width, block):
    assert (pixel_counts(block_windows(height, width, block), height, width) == 1).all()


@pytest.mark.parametrize(
    "args",
    [
        (0, 10, 16, 0),
        (10, -1, 16, 0),
        (10, 10, 0, 0),
        (10, 10, 16, 16),
        (10, 10, 16, -1),
        (10, 10, 16.0, 0),
        (10.5, 10, 16, 0),
    ],
)
def test_invalid_grids(args):
    with pytest.raises(TileGridError):
        TileGrid(*args)


def test_grid_error_is_a_value_error():
    assert issubclass(TileGridError, ValueError)


def test_grid_accepts_numpy_integers():
    grid = TileGrid(np.int64(100), np.int32(50), np.int16(32), np.uint8(8))
    assert grid == TileGrid(100, 50, 32, 8)
    assert type(grid.height) is int


@pytest.mark.parametrize("index", [9, 100, -10])
def test_grid_index_out_of_range(index):
    grid = TileGrid(100, 100, 50, 10)
    assert grid.row_offsets == (0, 40, 50)
    assert len(grid) == 9
    with pytest.raises(IndexError):
        grid[index]


@pytest.mark.parametrize("args", [(0, 10, 4), (10, 0, 4), (10, 10, 0), (10, 10, 2.5)])
def test_invalid_block_windows(args):
    with pytest.raises(TileGridError):
        block_windows(*args)


def test_grid_and_windows_pickle():
    import pickle

    grid = TileGrid(1000, 700, 256, 32)
    assert grid.row_offsets  # fill the cached offsets before pickling
    copy = pickle.loads(pickle.dumps(grid))
    assert copy == grid and hash(copy) == hash(grid)
    assert copy.windows() == grid.windows()
    assert pickle.loads(pickle.dumps(grid[3])) == grid[3]
