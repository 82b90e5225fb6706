"""A regular grid of overlapping square tiles over a scene, and the partition of a scene into blocks.

Edge policy "shift": along each axis the tile offsets are ``0, stride, 2 * stride, ...`` with
``stride = tile - overlap``, and the last tile is shifted back so that it ends exactly at the scene
edge. Every tile is then full size, lies inside the scene and needs no padding; the last two tiles
of an axis overlap by more than ``overlap`` pixels (by ``tile - 1`` at most). The only exception is an
axis shorter than one tile: it gets a single tile covering the whole axis, clipped to the scene, and
the caller pads that tile up to ``tile`` pixels before inference and crops the output back.

Tiles are numbered in raster order (row-major): tile ``i`` is on grid row ``i // n_cols`` and grid
column ``i % n_cols``.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .window import Window

__all__ = ["TileGrid", "TileGridError", "block_windows"]


class TileGridError(ValueError):
    """Invalid tile grid or block parameters."""


def _as_int(name: str, value: Any) -> int:  # any value: operator.index is the check
    try:
        return operator.index(value)
    except TypeError:
        raise TileGridError(f"{name} must be an integer, got {value!r}") from None


def _axis_offsets(size: int, tile: int, stride: int) -> tuple[int, ...]:
    """Tile offsets along one axis of ``size`` pixels under the "shift" edge policy."""
    if size <= tile:
        return (0,)
    # Every regular offset that leaves room for a full tile before the edge, then one tile flush with it.
    return (*range(0, size - tile, stride), size - tile)


@dataclass(frozen=True)
class TileGrid:
    """Square ``tile`` x ``tile`` tiles, ``overlap`` pixels apart, over a ``height`` x ``width`` scene."""

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        for name in ("height", "width", "tile", "overlap"):
            object.__setattr__(self, name, _as_int(name, getattr(self, name)))
        if self.height <= 0 or self.width <= 0:
            raise TileGridError(f"scene height and width must be positive, got {self.height} x {self.width}")
        if self.tile <= 0:
            raise TileGridError(f"tile size must be positive, got {self.tile}")
        if not 0 <= self.overlap < self.tile:
            raise TileGridError(
                f"overlap must be at least 0 and less than the tile size {self.tile}, got {self.overlap}"
            )

    @property
    def stride(self) -> int:
        """Distance between the offsets of neighbouring tiles, except the last one on each axis."""
        return self.tile - self.overlap

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(height, width) of every tile: ``tile`` on each axis, or the scene size where that is smaller."""
        return min(self.tile, self.height), min(self.tile, self.width)

    @cached_property
    def row_offsets(self) -> tuple[int, ...]:
        """Row offsets of the grid rows, ascending."""
        return _axis_offsets(self.height, self.tile, self.stride)

    @cached_property
    def col_offsets(self) -> tuple[int, ...]:
        """Column offsets of the grid columns, ascending."""
        return _axis_offsets(self.width, self.tile, self.stride)

    @property
    def n_rows(self) -> int:
        """Number of grid rows."""
        return len(self.row_offsets)

    @property
    def n_cols(self) -> int:
        """Number of grid columns."""
        return len(self.col_offsets)

    def _window(self, grid_row: int, grid_col: int) -> Window:
        tile_height, tile_width = self.tile_shape
        return Window(self.row_offsets[grid_row], self.col_offsets[grid_col], tile_height, tile_width)

    def windows(self) -> list[Window]:
        """All tile windows in raster order."""
        return list(self)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def __iter__(self) -> Iterator[Window]:
        for grid_row in range(self.n_rows):
            for grid_col in range(self.n_cols):
                yield self._window(grid_row, grid_col)

    def __getitem__(self, index: int) -> Window:
        """The window of tile ``index`` (negative indices count from the end)."""
        index = operator.index(index)
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"tile index {index} out of range for a grid of {count} tiles")
        return self._window(*divmod(index % count, self.n_cols))

    def tiles_touching(self, block: Window) -> list[int]:
        """Indices, in raster order, of the tiles that share at least one pixel with ``block``."""
        tile_height, tile_width = self.tile_shape
        rows = _touching(self.row_offsets, tile_height, block.row_off, block.row_stop)
        cols = _touching(self.col_offsets, tile_width, block.col_off, block.col_stop)
        return [grid_row * self.n_cols + grid_col for grid_row in rows for grid_col in cols]


def _touching(offsets: tuple[int, ...], extent: int, start: int, stop: int) -> range:
    """Positions of the intervals ``[offset, offset + extent)`` that meet ``[start, stop)``."""
    # Offsets ascend, so do the interval ends: those ending after ``start`` and beginning before ``stop``.
    first = bisect_right(offsets, start - extent)
    last = bisect_left(offsets, stop)
    return range(first, last)


def block_windows(height: int, width: int, block: int) -> list[Window]:
    """Partition a ``height`` x ``width`` scene into ``block`` x ``block`` windows, raster order.

    The last row and column of blocks are clipped to the scene.
    """
    height, width, block = (
        _as_int(n, v) for n, v in (("height", height), ("width", width), ("block", block))
    )
    if height <= 0 or width <= 0:
        raise TileGridError(f"scene height and width must be positive, got {height} x {width}")
    if block <= 0:
        raise TileGridError(f"block size must be positive, got {block}")
    return [
        Window(row_off, col_off, min(block, height - row_off), min(block, width - col_off))
        for row_off in range(0, height, block)
        for col_off in range(0, width, block)
    ]
