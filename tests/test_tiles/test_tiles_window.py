"""Window arithmetic and georeferencing, checked against pixel masks and affine transforms."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from tiles import InvalidWindowError, UnsupportedTransformError, Window, window_from_bounds

SETTINGS = settings(max_examples=150, deadline=None, database=None)

windows = st.builds(
    Window, st.integers(-20, 40), st.integers(-20, 40), st.integers(1, 30), st.integers(1, 30)
)
north_up = st.builds(
    lambda res_x, res_y, x0, y0, sign: Affine(res_x, 0, x0, 0, sign * res_y, y0),
    st.floats(0.05, 100),
    st.floats(0.05, 100),
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
    st.sampled_from([-1, 1]),
)


def mask(window: Window, origin: int = 30, size: int = 110) -> np.ndarray:
    """The window's pixels on a canvas whose origin is shifted by ``origin`` to allow negative offsets."""
    canvas = np.zeros((size, size), dtype=bool)
    canvas[
        window.row_off + origin : window.row_stop + origin, window.col_off + origin : window.col_stop + origin
    ] = True
    return canvas


@SETTINGS
@given(a=windows, b=windows)
def test_intersection_matches_pixel_masks(a, b):
    overlap = a.intersection(b)
    expected = mask(a) & mask(b)
    if overlap is None:
        assert not expected.any()
    else:
        assert (mask(overlap) == expected).all()
        assert overlap == b.intersection(a)


@SETTINGS
@given(outer=windows, inner=windows)
def test_relative_to_slices_the_same_pixels(outer, inner):
    scene = np.arange(110 * 110).reshape(110, 110)
    shifted = Window(outer.row_off + 30, outer.col_off + 30, outer.height, outer.width)
    region = scene[shifted.slices()]
    inside = inner.intersection(outer)
    if inside is None:
        return
    relative = inside.relative_to(outer)
    absolute = Window(inside.row_off + 30, inside.col_off + 30, inside.height, inside.width)
    np.testing.assert_array_equal(region[relative.slices()], scene[absolute.slices()])


def test_window_properties():
    window = Window(10, 20, 30, 40)
    assert window.shape == (30, 40)
    assert (window.row_stop, window.col_stop) == (40, 60)
    assert window.slices() == (slice(10, 40), slice(20, 60))
    assert window.relative_to(Window(5, 5, 100, 100)) == Window(5, 15, 30, 40)


def matrix(transform: Affine) -> np.ndarray:
    return np.array(tuple(transform)).reshape(3, 3)


@SETTINGS
@given(window=windows, transform=st.one_of(north_up, st.builds(Affine.rotation, st.floats(-180, 180))))
def test_transform_and_bounds_follow_the_affine(window, transform):
    local = window.transform(transform)
    expected = matrix(transform) @ matrix(Affine.translation(window.col_off, window.row_off))
    np.testing.assert_allclose(matrix(local), expected, rtol=1e-12, atol=1e-6)
    pixel_corners = [
        (c, r, 1) for c in (window.col_off, window.col_stop) for r in (window.row_off, window.row_stop)
    ]
    corners = (matrix(transform) @ np.array(pixel_corners).T)[:2]
    left, bottom, right, top = window.bounds(transform)
    np.testing.assert_allclose([left, bottom], corners.min(axis=1), atol=1e-6)
    np.testing.assert_allclose([right, top], corners.max(axis=1), atol=1e-6)


@SETTINGS
@given(window=windows, transform=north_up)
def test_window_from_bounds_inverts_bounds(window, transform):
    assert window_from_bounds(window.bounds(transform), transform) == window


def test_bounds_of_a_north_up_window():
    transform = Affine(10, 0, 1000, 0, -10, 5000)
    assert Window(2, 3, 4, 5).bounds(transform) == (1030, 4940, 1080, 4980)
    assert window_from_bounds((1031, 4941, 1079, 4979), transform) == Window(2, 3, 4, 5)


@pytest.mark.parametrize(
    "transform", [Affine(10, 1, 0, 1, -10, 0), Affine.rotation(90), Affine(10, 0, 0, 0, 0, 0)]
)
def test_window_from_bounds_rejects_unsupported_transforms(transform):
    with pytest.raises(UnsupportedTransformError):
        window_from_bounds((0, 0, 100, 100), transform)
    assert issubclass(UnsupportedTransformError, ValueError)


def test_window_from_bounds_rejects_sub_pixel_bounds():
    with pytest.raises(InvalidWindowError):
        window_from_bounds((0, 0, 2, 2), Affine(10, 0, 0, 0, -10, 100))


@pytest.mark.parametrize(
    "fields", [(0, 0, 0, 5), (0, 0, 5, 0), (0, 0, -1, 5), (0.5, 0, 5, 5), (0, 0, 5.0, 5), (0, "1", 5, 5)]
)
def test_invalid_windows(fields):
    with pytest.raises(InvalidWindowError):
        Window(*fields)
    assert issubclass(InvalidWindowError, ValueError)


def test_numpy_integers_become_ints():
    window = Window(np.int64(1), np.int32(2), np.uint16(3), np.int8(4))
    assert window == Window(1, 2, 3, 4)
    assert hash(window) == hash(Window(1, 2, 3, 4))
    assert all(type(v) is int for v in (window.row_off, window.col_off, window.height, window.width))
