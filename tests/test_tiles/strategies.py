"""Hypothesis strategies shared by the tiles tests."""

from __future__ import annotations

from hypothesis import strategies as st

from tiles import TileGrid


@st.composite
def grids(draw, max_size: int = 3000, max_per_axis: int = 40) -> TileGrid:
    """Any scene shape, tile sizes 16..512 and overlaps, limited to about max_per_axis tiles per axis."""
    height = draw(st.integers(1, max_size))
    width = draw(st.integers(1, max_size))
    longest = max(height, width)
    smallest = max(16, -(-longest // max_per_axis))
    # Tiles up to half the largest scene size, so that most scenes hold several tiles.
    tile = draw(st.integers(smallest, max(smallest, min(512, max_size // 2))))
    min_stride = max(1, -(-(longest - tile) // (max_per_axis - 1)))
    overlap = draw(st.integers(0, max(0, tile - min_stride)))
    return TileGrid(height, width, tile, overlap)
