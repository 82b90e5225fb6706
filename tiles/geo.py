"""From georeferenced bounds to pixel windows (north-up or south-up grids; no rotation)."""

from __future__ import annotations

import math

from affine import Affine

from .window import Window

__all__ = ["UnsupportedTransformError", "window_from_bounds"]


class UnsupportedTransformError(ValueError):
    """A rotated, sheared or degenerate transform."""


def _nearest(value: float) -> int:
    """Round half up, so that values a hair off a pixel edge land on it."""
    return math.floor(value + 0.5)


def window_from_bounds(bounds: tuple[float, float, float, float], transform: Affine) -> Window:
    """The window of whole pixels nearest to (left, bottom, right, top) ``bounds`` on ``transform``'s grid.

    The window may extend beyond the raster; intersect it with the raster's window to clip it.
    Raises ``UnsupportedTransformError`` for rotated or sheared transforms and ``InvalidWindowError``
    when the bounds round to less than one pixel.
    """
    if transform.b != 0 or transform.d != 0:
        raise UnsupportedTransformError(f"rotated or sheared transforms are not supported: {transform!r}")
    if transform.a == 0 or transform.e == 0:
        raise UnsupportedTransformError(f"degenerate transform with a zero pixel size: {transform!r}")
    left, bottom, right, top = bounds
    # With no rotation, x = a * col + c and y = e * row + f.
    col_a, col_b = ((x - transform.c) / transform.a for x in (left, right))
    row_a, row_b = ((y - transform.f) / transform.e for y in (top, bottom))
    row_off, row_stop = _nearest(min(row_a, row_b)), _nearest(max(row_a, row_b))
    col_off, col_stop = _nearest(min(col_a, col_b)), _nearest(max(col_a, col_b))
    return Window(row_off, col_off, row_stop - row_off, col_stop - col_off)
