"""Image/mask chip folders without georeferencing (many public datasets ship this way)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from odc.geo.geobox import GeoBox
from PIL import Image

from geoseg.errors import LabelError
from geoseg.io.classes import hex_to_rgb

IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass
class Chip:
    """One image (H, W, C) with its class-index mask (H, W uint8, 255 = ignore).

    ``geobox`` places georeferenced chips (cut from GeoTIFF scenes) on the ground.
    """

    image: np.ndarray
    mask: np.ndarray
    name: str
    geobox: GeoBox | None = None


def rgb_mask_to_index(rgb: np.ndarray, colors: Mapping[str, int], path: Path) -> np.ndarray:
    """Map an RGB-coded mask to class indices; colours mapped to ``IGNORE_INDEX`` are ignored.

    Any colour that is not in ``colors`` raises ``LabelError`` naming the file.
    """
    code = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    out = np.full(code.shape, IGNORE_INDEX, np.uint8)
    known = np.zeros(code.shape, bool)
    for color, index in colors.items():
        r, g, b = hex_to_rgb(color)
        hit = code == ((r << 16) | (g << 8) | b)
        out[hit] = index
        known |= hit
    if not known.all():
        bad = np.unique(code[~known])[:5]
        raise LabelError(f"{path}: unknown mask colours {[f'#{int(v):06X}' for v in bad]}")
    return out


def find_pairs(root: Path, image_dir: str = "images", mask_dir: str = "masks") -> list[tuple[Path, Path]]:
    """Image/mask pairs under ``root`` (recursively), matched by file stem inside sibling folders."""
    pairs = []
    for images in sorted(root.rglob(image_dir)):
        masks = images.parent / mask_dir
        if not images.is_dir() or not masks.is_dir():
            continue
        by_stem = {p.stem: p for p in masks.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        for img in sorted(images.iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES and img.stem in by_stem:
                pairs.append((img, by_stem[img.stem]))
    if not pairs:
        raise LabelError(f"{root}: no image/mask pairs found in '{image_dir}'/'{mask_dir}' folders")
    return pairs


def load_chips(pairs: Sequence[tuple[Path, Path]], colors: Mapping[str, int]) -> list[Chip]:
    chips = []
    for img_path, mask_path in pairs:
        image = np.asarray(Image.open(img_path).convert("RGB"))
        mask = rgb_mask_to_index(np.asarray(Image.open(mask_path).convert("RGB")), colors, mask_path)
        if mask.shape != image.shape[:2]:
            raise LabelError(f"{mask_path}: mask shape {mask.shape} differs from image {image.shape[:2]}")
        chips.append(Chip(image=image, mask=mask, name=str(img_path)))
    return chips


def data_sha256(paths: Sequence[Path]) -> str:
    """Hash of the training files' bytes, in a stable order."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()
