"""Tile a raster into overlapping tiles, weight them for blending, and stitch their outputs into blocks.

Pure numpy and ``affine``: no I/O, no deep-learning or array-scheduling framework.
"""

from __future__ import annotations

from .blend import BLEND_KINDS, WEIGHT_FLOOR, BlendError, blend_weights
from .geo import UnsupportedTransformError, window_from_bounds
from .grid import TileGrid, TileGridError, block_windows
from .stitch import BlockAccumulator, StitchError, stitch
from .window import InvalidWindowError, Window

__all__ = [
    "BLEND_KINDS",
    "WEIGHT_FLOOR",
    "BlendError",
    "BlockAccumulator",
    "InvalidWindowError",
    "StitchError",
    "TileGrid",
    "TileGridError",
    "UnsupportedTransformError",
    "Window",
    "blend_weights",
    "block_windows",
    "stitch",
    "window_from_bounds",
]
