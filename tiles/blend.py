"""Blending weights for overlapping tiles.

A tile's weight is the outer product of two 1-D profiles. On each side of the tile that is interior
to the scene, the profile ramps up from a small positive floor to 1 over ``overlap`` pixels; on a
side that lies on the scene border it stays 1 up to the edge, since no other tile covers those
pixels. The weights are not normalised: the accumulator divides by the accumulated weight, which
also handles the extra overlap of the last, shifted tile of each axis.

Kinds: ``"cosine"`` (raised-cosine / Hann half-ramps), ``"linear"`` (triangular ramps) and
``"constant"`` (all ones: plain averaging). For two neighbours exactly ``tile - overlap`` apart, the
cosine and linear ramps of the one tile and the other sum to 1 (up to the floor) across the overlap.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .window import Window

__all__ = ["BLEND_KINDS", "WEIGHT_FLOOR", "BlendError", "blend_weights"]

BLEND_KINDS = ("cosine", "linear", "constant")
WEIGHT_FLOOR = 1e-3
"""Smallest weight: every pixel a tile covers gets a positive weight from it."""


class BlendError(ValueError):
    """Unknown blend kind, negative overlap, or a window that does not lie inside the scene."""


def check_kind(kind: str) -> None:
    """Raise ``BlendError`` unless ``kind`` is one of ``BLEND_KINDS``."""
    if kind not in BLEND_KINDS:
        raise BlendError(f"unknown blend kind {kind!r}; expected one of {', '.join(BLEND_KINDS)}")


@lru_cache(maxsize=64)
def _ramp(length: int, kind: str) -> np.ndarray:
    """Rising ramp of ``length`` pixels, sampled at pixel centres, from just above the floor to below 1."""
    t = (np.arange(length) + 0.5) / length
    rise = 0.5 - 0.5 * np.cos(np.pi * t) if kind == "cosine" else t
    ramp = WEIGHT_FLOOR + (1.0 - WEIGHT_FLOOR) * rise
    ramp.setflags(write=False)
    return ramp


@lru_cache(maxsize=256)
def _profile(size: int, overlap: int, ramp_start: bool, ramp_end: bool, kind: str) -> np.ndarray:
    """1-D weights of ``size`` pixels, ramping over ``overlap`` pixels at the flagged ends."""
    profile = np.ones(size)
    length = min(overlap, size)
    if kind != "constant" and length > 0:
        ramp = _ramp(length, kind)
        if ramp_start:
            profile[:length] = ramp
        if ramp_end:
            # Where both ramps reach (overlap > size / 2), keep the smaller weight.
            profile[size - length :] = np.minimum(profile[size - length :], ramp[::-1])
    profile.setflags(write=False)
    return profile


def blend_weights(
    window: Window, scene_height: int, scene_width: int, overlap: int, kind: str = "cosine"
) -> np.ndarray:
    """float32 (height, width) weights in (0, 1] for the tile at ``window`` of a scene (read-only).

    Sides of the window on the scene border are not ramped; ``overlap == 0`` gives all ones. Weights
    are at least ``WEIGHT_FLOOR`` along a ramped edge and ``WEIGHT_FLOOR ** 2`` in a ramped corner.
    """
    check_kind(kind)
    if overlap < 0:
        raise BlendError(f"overlap must not be negative, got {overlap}")
    if window.intersection(Window(0, 0, scene_height, scene_width)) != window:
        raise BlendError(f"{window} does not lie inside a {scene_height} x {scene_width} scene")
    return _weights(
        window.height,
        window.width,
        overlap,
        (
            window.row_off > 0,
            window.row_stop < scene_height,
            window.col_off > 0,
            window.col_stop < scene_width,
        ),
        kind,
    )


@lru_cache(maxsize=64)
def _weights(
    height: int, width: int, overlap: int, ramped: tuple[bool, bool, bool, bool], kind: str
) -> np.ndarray:
    """Read-only weights of a tile shape and ramped sides (top, bottom, left, right): a scene's tiles
    share a handful of these."""
    rows = _profile(height, overlap, ramped[0], ramped[1], kind)
    cols = _profile(width, overlap, ramped[2], ramped[3], kind)
    weights = np.outer(rows, cols).astype(np.float32)
    weights.setflags(write=False)
    return weights
