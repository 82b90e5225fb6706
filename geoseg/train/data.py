"""Assemble training and validation chips from GeoTIFF scenes + labels, or from plain chip folders.

Validation is spatially separate from training: whole held-out scenes (``--val-images``), whole
chip folders (``--val-chips``), or else the trailing strip of each scene along its longer axis
(``--val-fraction``). Training windows are drawn inside the training part only, so no training
window overlaps a validation pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from odc.geo.geobox import GeoBox

from geoseg.errors import LabelError, SceneError
from geoseg.inference.scene_checks import INTEGER_RANGES
from geoseg.io.chips import IGNORE_INDEX, Chip, data_sha256, find_pairs, load_chips
from geoseg.io.classes import BUILDING_CLASSES, ColorTable, display_color
from geoseg.io.labels import is_vector, pair_labels, read_labels
from geoseg.io.raster import Scene, crs_of, open_scene, read_window
from geoseg.train.config import TrainConfig
from tiles import Window

GSD_SAME = 0.01  # relative GSD difference below which a scene is used on its own grid


@dataclass
class TrainingData:
    """Chips plus what the checkpoint must record about the data."""

    train: list[Chip]
    val: list[Chip]
    classes: list[str]
    colors: list[str]
    background: str | None
    bands: list[str]
    input_dtype: str
    value_range: tuple[float, float]
    gsd_m: float | None
    sha256: str
    val_regions: list[dict] = field(default_factory=list)


def default_band_names(scene: Scene) -> list[str]:
    if all(scene.band_names) and len(set(scene.band_names)) == scene.count:
        return [str(b).lower() for b in scene.band_names]
    if scene.count == 1:
        return ["pan"]
    if scene.count in (3, 4) and scene.dtype == "uint8":
        return ["red", "green", "blue", "nir"][: scene.count]
    return [f"b{i}" for i in range(1, scene.count + 1)]


def training_grid(scene: Scene, gsd_m: float | None) -> GeoBox | None:
    """The grid to sample ``scene`` on: ``None`` for its own, or a zoom to ``gsd_m``."""
    if gsd_m is None or abs(gsd_m / scene.gsd_m - 1) < GSD_SAME:
        return None
    return scene.geobox.zoom_out(gsd_m / scene.gsd_m)


def scene_chip(
    image: Path,
    labels: Path,
    classes: Sequence[str],
    class_field: str | None,
    background: str | None,
    gsd_m: float | None,
) -> Chip:
    """Read a whole scene (resampled to ``gsd_m`` when given) and its labels on the same grid."""
    scene = open_scene(image)
    grid = training_grid(scene, gsd_m)
    geobox = grid if grid is not None else scene.geobox
    h, w = int(geobox.shape.y), int(geobox.shape.x)
    data, valid = read_window(scene.path, Window(0, 0, h, w), list(range(1, scene.count + 1)), grid)
    mask = read_labels(labels, geobox, classes, class_field, background)
    mask[~valid] = IGNORE_INDEX
    if (mask == IGNORE_INDEX).all():
        raise LabelError(f"{labels}: no labelled pixel falls on valid pixels of {image}")
    return Chip(image=np.moveaxis(data, 0, -1), mask=mask, name=str(image), geobox=geobox)


def split_strip(chip: Chip, fraction: float) -> tuple[Chip, Chip]:
    """Cut off the trailing ``fraction`` of a chip along its longer axis as validation."""
    h, w = chip.mask.shape
    along_cols = w >= h
    n = w if along_cols else h
    cut = min(n - 1, max(1, int(round(n * (1 - fraction)))))
    a = (slice(None), slice(0, cut)) if along_cols else (slice(0, cut), slice(None))
    b = (slice(None), slice(cut, None)) if along_cols else (slice(cut, None), slice(None))

    def part(s: tuple[slice, slice]) -> Chip:
        box = chip.geobox[s] if chip.geobox is not None else None
        return Chip(image=chip.image[s], mask=chip.mask[s], name=chip.name, geobox=box)

    return part(a), part(b)


def _label_classes(cfg: TrainConfig) -> list[str]:
    """Class names in model order: given, the buildings pair, or the sorted names found in the labels."""
    if cfg.task == "buildings":
        return list(BUILDING_CLASSES)
    if cfg.classes:
        return list(cfg.classes)
    import geopandas as gpd

    names: set[str] = set()
    for path in cfg.labels + cfg.val_labels:
        if not is_vector(path) or cfg.class_field is None:
            raise LabelError(f"{path}: name the classes with --classes (in class-id order)")
        if not path.exists():
            raise LabelError(f"{path}: no such label file")
        column = gpd.read_file(path, columns=[cfg.class_field], ignore_geometry=True, engine="pyogrio")
        if cfg.class_field not in column.columns:
            raise LabelError(f"{path}: no field '{cfg.class_field}'")
        values = column[cfg.class_field].dropna()
        if not all(isinstance(v, str) for v in values):
            raise LabelError(f"{path}: field '{cfg.class_field}' holds ids; name the classes with --classes")
        names |= {v.strip().lower() for v in values if v.strip()}
    if not names:
        raise LabelError(f"{cfg.labels[0]}: no class names found in field '{cfg.class_field}'")
    return sorted(names)


def _value_range(chips: Sequence[Chip], dtype: str) -> tuple[float, float]:
    if dtype in INTEGER_RANGES:
        return INTEGER_RANGES[dtype]
    values = np.concatenate([c.image[c.mask != IGNORE_INDEX].ravel() for c in chips])
    lo, hi = np.percentile(values, [0.1, 99.9])
    return float(lo), float(hi)


def load_geo_data(cfg: TrainConfig) -> TrainingData:
    classes = _label_classes(cfg)
    background = "background" if cfg.task == "buildings" else None
    scenes = [open_scene(p) for p in cfg.images + cfg.val_images]
    first = scenes[0]
    for s in scenes[1:]:
        if (s.count, s.dtype) != (first.count, first.dtype):
            raise SceneError(
                f"{s.path}: {s.count} band(s) of {s.dtype}, but {first.path} has "
                f"{first.count} of {first.dtype}; training images must match"
            )
    gsd = cfg.gsd_m if cfg.gsd_m is not None else float(np.median([s.gsd_m for s in scenes]))

    def chips(images: list[Path], labels: list[Path]) -> list[Chip]:
        return [
            scene_chip(i, lab, classes, cfg.class_field, background, gsd)
            for i, lab in pair_labels(images, labels)
        ]

    train = chips(cfg.images, cfg.labels)
    if cfg.val_images:
        val = chips(cfg.val_images, cfg.val_labels)
    else:
        parts = [split_strip(c, cfg.val_fraction) for c in train]
        train, val = [p[0] for p in parts], [p[1] for p in parts]
    val = [c for c in val if (c.mask != IGNORE_INDEX).any()]
    if not val:
        raise LabelError(f"{cfg.labels[0]}: the validation part has no labelled pixels")
    regions = [
        {
            "image": c.name,
            "bounds": list(c.geobox.extent.boundingbox),
            "crs": _crs_name(crs_of(c.geobox)),
        }
        for c in val
        if c.geobox is not None
    ]
    files = sorted({*cfg.images, *cfg.labels, *cfg.val_images, *cfg.val_labels})
    return TrainingData(
        train=train,
        val=val,
        classes=classes,
        colors=[display_color(c, i) for i, c in enumerate(classes)],
        background=background,
        bands=cfg.bands or default_band_names(first),
        input_dtype=first.dtype,
        value_range=_value_range(train, first.dtype),
        gsd_m=gsd,
        sha256=data_sha256(files),
        val_regions=regions,
    )


def load_chip_data(cfg: TrainConfig) -> TrainingData:
    assert cfg.chips is not None and cfg.colors is not None
    table = ColorTable.load(cfg.colors)
    pairs = find_pairs(cfg.chips)
    if cfg.val_chips:
        is_val = [cfg.val_chips in img.relative_to(cfg.chips).parts for img, _ in pairs]
        if not any(is_val):
            raise LabelError(f"{cfg.chips}: no chip folder named '{cfg.val_chips}' (--val-chips)")
    else:
        n_val = max(1, math.ceil(len(pairs) * cfg.val_fraction))
        is_val = [i >= len(pairs) - n_val for i in range(len(pairs))]
    if all(is_val):
        raise LabelError(f"{cfg.chips}: every chip is in the validation set")
    colors = table.index_of_color(IGNORE_INDEX)
    train = load_chips([p for p, v in zip(pairs, is_val, strict=True) if not v], colors)
    val = load_chips([p for p, v in zip(pairs, is_val, strict=True) if v], colors)
    classes = [c.name for c in table.classes]
    return TrainingData(
        train=train,
        val=val,
        classes=classes,
        colors=[c.color or display_color(c.name, i) for i, c in enumerate(table.classes)],
        background=None,
        bands=cfg.bands or ["red", "green", "blue"],
        input_dtype="uint8",
        value_range=(0.0, 255.0),
        gsd_m=cfg.gsd_m,
        sha256=data_sha256([p for pair in pairs for p in pair] + [cfg.colors]),
    )


def _crs_name(crs) -> str:
    return f"EPSG:{crs.epsg}" if crs.epsg else crs.to_wkt()


def load_training_data(cfg: TrainConfig) -> TrainingData:
    """Training and validation chips for ``cfg``; raises ``LabelError``/``SceneError`` on bad input."""
    data = load_geo_data(cfg) if cfg.images else load_chip_data(cfg)
    if cfg.task == "buildings":
        labelled = np.concatenate([c.mask[c.mask != IGNORE_INDEX] for c in data.train])
        if not (labelled == data.classes.index("building")).any():
            raise LabelError(
                f"{cfg.labels[0] if cfg.labels else cfg.chips}: no building pixels in the training part"
            )
    return data
