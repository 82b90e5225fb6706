"""Stitch tile outputs into an output block as a weighted average.

A ``BlockAccumulator`` holds two block-sized arrays: the weighted sum of the tile values and the sum
of the weights. Tiles are added in any order; ``result`` divides the one by the other, so the weights
need no normalisation and tiles need not be added all at once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import DTypeLike

from .blend import blend_weights, check_kind
from .grid import TileGrid
from .window import Window

__all__ = ["BlockAccumulator", "StitchError", "stitch"]


class StitchError(ValueError):
    """Tile values or weights whose shape does not match the tile window or the accumulator."""


class BlockAccumulator:
    """Weighted average of tile outputs over one output ``block`` of a scene.

    Windows (block and tiles) are in scene pixel coordinates.
    """

    def __init__(self, block: Window, channels: int, dtype: DTypeLike = np.float32) -> None:
        if channels <= 0:
            raise StitchError(f"channels must be positive, got {channels}")
        self.block = block
        self.channels = channels
        self._sum = np.zeros((channels, *block.shape), dtype=dtype)
        self._weight = np.zeros(block.shape, dtype=dtype)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the accumulated arrays and of ``result``."""
        return self._sum.dtype

    def add(self, tile_window: Window, values: np.ndarray, weights: np.ndarray) -> None:
        """Add ``values`` (C, th, tw) weighted by ``weights`` (th, tw) for the tile at ``tile_window``.

        Only the part of the tile inside the block is used; a tile outside the block is ignored.
        """
        expected = (self.channels, *tile_window.shape)
        if values.shape != expected:
            raise StitchError(f"values of shape {values.shape} do not match (channels, *window) {expected}")
        if weights.shape != tile_window.shape:
            raise StitchError(f"weights of shape {weights.shape} do not match window {tile_window.shape}")
        overlap = tile_window.intersection(self.block)
        if overlap is None:
            return
        dst_rows, dst_cols = overlap.relative_to(self.block).slices()
        src_rows, src_cols = overlap.relative_to(tile_window).slices()
        tile_weights = weights[src_rows, src_cols]
        self._sum[:, dst_rows, dst_cols] += values[:, src_rows, src_cols] * tile_weights
        self._weight[dst_rows, dst_cols] += tile_weights

    @property
    def covered(self) -> np.ndarray:
        """bool (bh, bw): pixels with a positive accumulated weight."""
        return self._weight > 0

    @property
    def weight_sum(self) -> np.ndarray:
        """Read-only view of the accumulated weights (bh, bw)."""
        view = self._weight.view()
        view.flags.writeable = False
        return view

    @property
    def weighted_sum(self) -> np.ndarray:
        """Read-only view of the accumulated weighted values (C, bh, bw): each pixel's channels share one
        weight, so their argmax is that of ``result`` without the division."""
        view = self._sum.view()
        view.flags.writeable = False
        return view

    def result(self, fill: float = 0.0) -> np.ndarray:
        """(C, bh, bw) weighted average of the added tiles, ``fill`` where nothing was added."""
        out = np.full(self._sum.shape, fill, dtype=self.dtype)
        covered = self.covered
        np.divide(self._sum, self._weight, out=out, where=covered[np.newaxis])
        return out


def stitch(
    grid: TileGrid,
    block: Window,
    tile_values: Mapping[int, np.ndarray],
    kind: str = "cosine",
    fill: float = 0.0,
) -> np.ndarray:
    """Blend the (C, th, tw) outputs of the tiles of ``grid``, keyed by tile index, into ``block``.

    Tiles that miss the block are skipped; block pixels that no given tile covers get ``fill``. The
    result has the tiles' float dtype (float32 at least: integer outputs give float64).
    """
    check_kind(kind)
    if not tile_values:
        raise StitchError("no tile values to stitch")
    first = next(iter(tile_values.values()))
    if first.ndim != 3:
        raise StitchError(f"tile values must be (channels, height, width), got shape {first.shape}")
    accumulator = BlockAccumulator(block, first.shape[0], dtype=np.result_type(first.dtype, np.float32))
    for index, values in tile_values.items():
        window = grid[index]
        if window.intersection(block) is None:
            continue
        weights = blend_weights(window, grid.height, grid.width, grid.overlap, kind)
        accumulator.add(window, values, weights)
    return accumulator.result(fill)
