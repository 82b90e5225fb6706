"""Check that a scene suits a model, and choose the grid the model runs on."""

from __future__ import annotations

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox

from geoseg.errors import ModelMismatchError
from geoseg.io.bandroles import find_roles, knows_roles, scene_roles
from geoseg.io.raster import Scene
from geoseg.models.meta import CheckpointMeta

INTEGER_RANGES = {"uint8": (0, 255), "uint16": (0, 65535), "int16": (-32768, 32767)}


def select_bands(
    scene: Scene, meta: CheckpointMeta, bands: list[int] | None, band_names: list[str] | None = None
) -> list[int]:
    """1-based band indexes to read; raises ``ModelMismatchError`` when the scene does not have them.

    ``bands`` (indexes) win; otherwise, where the model names its bands by role and the scene's bands
    have roles (band descriptions, or ``band_names`` for scenes without them), bands are matched by role
    (``geoseg.io.bandroles``); otherwise the scene must have exactly the model's band count.
    """
    expected = ", ".join(meta.bands)
    if bands is None:
        roles = scene_roles(scene.path, scene.count, scene.band_names, band_names)
        if knows_roles(meta.bands) and any(roles):
            return find_roles(scene.path, roles, meta.bands, "the model")
        if scene.count != meta.in_channels:
            raise ModelMismatchError(
                f"{scene.path}: scene has {scene.count} band(s) but the model expects {meta.in_channels} "
                f"({expected}); name the scene's bands with --band-names or choose them with --bands"
            )
        return list(range(1, scene.count + 1))
    bad = [b for b in bands if not 1 <= b <= scene.count]
    if bad:
        raise ModelMismatchError(f"{scene.path}: band(s) {bad} do not exist (scene has {scene.count})")
    if len(bands) != meta.in_channels:
        raise ModelMismatchError(
            f"{scene.path}: {len(bands)} band(s) selected but the model expects "
            f"{meta.in_channels} ({expected})"
        )
    return bands


def check_value_range(scene: Scene, meta: CheckpointMeta, bands: list[int]) -> None:
    """Refuse imagery whose data type or values lie outside what the model was trained on."""
    if meta.input_dtype in INTEGER_RANGES and scene.dtype != meta.input_dtype:
        lo, hi = meta.value_range
        raise ModelMismatchError(
            f"{scene.path}: scene data type is {scene.dtype} but the model expects {meta.input_dtype} "
            f"imagery (values {lo:g}-{hi:g}); rescale the scene or use a model trained on {scene.dtype}"
        )
    if scene.dtype == meta.input_dtype and meta.input_dtype in INTEGER_RANGES:
        return  # the type itself bounds the values
    lo, hi = meta.value_range
    with rasterio.open(scene.path) as src:
        h, w = scene.shape
        f = max(1, max(h, w) // 1024)
        sample = src.read(bands, out_shape=(len(bands), max(1, h // f), max(1, w // f)), masked=True)
    values = sample.compressed()
    if values.size == 0:
        return
    q_lo, q_hi = np.percentile(values, [1, 99])
    span = hi - lo
    if q_lo < lo - 0.1 * span or q_hi > hi + 0.1 * span:
        raise ModelMismatchError(
            f"{scene.path}: pixel values span {q_lo:g}-{q_hi:g} but the model expects {lo:g}-{hi:g}"
        )


def work_grid(scene: Scene, meta: CheckpointMeta, resample: bool) -> tuple[GeoBox | None, str | None]:
    """The grid the model runs on: ``None`` (the scene's own) or a resampled GeoBox, plus a notice."""
    if not resample or meta.gsd_m is None:
        return None, None
    ratio = meta.gsd_m / scene.gsd_m
    if 1 / meta.gsd_tolerance <= ratio <= meta.gsd_tolerance:
        return None, None
    if ratio < 1:
        # Coarser imagery than the model's: upsampling adds no detail; run on the scene grid.
        return None, (
            f"scene GSD {scene.gsd_m:.3g} m is coarser than the model's {meta.gsd_m:.3g} m; "
            "running at the scene's resolution"
        )
    geobox = scene.geobox.zoom_out(ratio)
    return geobox, (
        f"scene GSD {scene.gsd_m:.3g} m differs from the model's {meta.gsd_m:.3g} m: the model runs on a "
        f"{geobox.shape.y}x{geobox.shape.x} grid and results are mapped back to the scene grid "
        "(--no-resample to disable)"
    )
