"""Pixel windows: a rectangle of rows and columns in a raster, in the spirit of rasterio's ``Window``.

Offsets may be negative (a window relative to another one can start before it); height and width
must be positive, so an empty window is never constructed: ``intersection`` returns ``None`` instead.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from affine import Affine

__all__ = ["InvalidWindowError", "Window"]


class InvalidWindowError(ValueError):
    """A window with a non-integer field or a height or width that is not positive."""


@dataclass(frozen=True)
class Window:
    """``height`` x ``width`` pixels whose top-left pixel is at (``row_off``, ``col_off``)."""

    row_off: int
    col_off: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for name in ("row_off", "col_off", "height", "width"):
            value = getattr(self, name)
            try:
                # Accept numpy integers but store plain ints, so equal windows hash equal.
                object.__setattr__(self, name, operator.index(value))
            except TypeError:
                raise InvalidWindowError(f"Window.{name} must be an integer, got {value!r}") from None
        if self.height <= 0 or self.width <= 0:
            raise InvalidWindowError(
                f"Window height and width must be positive, got {self.height} x {self.width}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    @property
    def row_stop(self) -> int:
        """One past the last row."""
        return self.row_off + self.height

    @property
    def col_stop(self) -> int:
        """One past the last column."""
        return self.col_off + self.width

    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices that select this window from an array indexed from the same origin."""
        return slice(self.row_off, self.row_stop), slice(self.col_off, self.col_stop)

    def intersection(self, other: Window) -> Window | None:
        """The overlap of two windows, or ``None`` when they share no pixel."""
        row_off = max(self.row_off, other.row_off)
        col_off = max(self.col_off, other.col_off)
        row_stop = min(self.row_stop, other.row_stop)
        col_stop = min(self.col_stop, other.col_stop)
        if row_stop <= row_off or col_stop <= col_off:
            return None
        return Window(row_off, col_off, row_stop - row_off, col_stop - col_off)

    def relative_to(self, outer: Window) -> Window:
        """This window with offsets counted from ``outer``'s top-left pixel instead of the raster's."""
        return Window(self.row_off - outer.row_off, self.col_off - outer.col_off, self.height, self.width)

    def transform(self, transform: Affine) -> Affine:
        """The affine transform of the window's own pixel grid: ``transform`` moved to the window origin."""
        x, y = apply(transform, self.col_off, self.row_off)
        return Affine(transform.a, transform.b, x, transform.d, transform.e, y)

    def bounds(self, transform: Affine) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the CRS of ``transform``: the box around the window's corners."""
        corners = [
            apply(transform, col, row)
            for col in (self.col_off, self.col_stop)
            for row in (self.row_off, self.row_stop)
        ]
        xs = [x for x, _ in corners]
        ys = [y for _, y in corners]
        return min(xs), min(ys), max(xs), max(ys)


def apply(transform: Affine, col: float, row: float) -> tuple[float, float]:
    """The (x, y) of pixel position (``col``, ``row``).

    Spelled out rather than ``transform * (col, row)``, which affine 3 deprecates and affine 2 lacks
    the ``@`` replacement for.
    """
    return (
        transform.a * col + transform.b * row + transform.c,
        transform.d * col + transform.e * row + transform.f,
    )
