"""Window samplers over training chips, with scale, flip/rotation and radiometric augmentation.

``RandomChipSampler`` draws windows anywhere (chips weighted by area); ``GridChipSampler`` walks a
shuffled grid of overlapping windows so each epoch sees every part of every chip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from geoseg.io.chips import IGNORE_INDEX, Chip
from tiles import TileGrid


class RandomChipSampler:
    """Draws augmented (image, mask) batches of ``size``² windows from chips.

    ``scale_range`` resamples each window by a log-uniform factor so the model tolerates imagery
    whose ground sample distance differs from the training data's. ``brightness`` is the relative
    gain/offset jitter, as a fraction of ``value_range``.
    """

    def __init__(
        self,
        chips: Sequence[Chip],
        size: int,
        seed: int | Sequence[int],
        scale_range: tuple[float, float] = (0.5, 2.0),
        brightness: float = 0.15,
        value_range: tuple[float, float] = (0.0, 255.0),
    ) -> None:
        self.chips = list(chips)
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.scale_range = scale_range
        self.brightness = brightness
        self.value_range = value_range
        areas = np.array([c.mask.size for c in self.chips], float)
        self.p = areas / areas.sum()

    def _source_size(self, chip: Chip) -> int:
        lo, hi = np.log(self.scale_range[0]), np.log(self.scale_range[1])
        scale = float(np.exp(self.rng.uniform(lo, hi)))
        h, w = chip.mask.shape
        return max(8, min(int(round(self.size / scale)), h, w))

    def _next_window(self) -> tuple[Chip, int, int, int, int]:
        chip = self.chips[int(self.rng.choice(len(self.chips), p=self.p))]
        src = self._source_size(chip)
        h, w = chip.mask.shape
        r = int(self.rng.integers(0, h - src + 1))
        c = int(self.rng.integers(0, w - src + 1))
        return chip, r, c, src, src

    def _sample(self, chip: Chip, r: int, c: int, sh: int, sw: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(np.ascontiguousarray(chip.image[r : r + sh, c : c + sw], dtype=np.float32))
        msk = torch.from_numpy(np.ascontiguousarray(chip.mask[r : r + sh, c : c + sw]))
        img = F.interpolate(
            img.permute(2, 0, 1)[None], size=(self.size, self.size), mode="bilinear", align_corners=False
        )[0]
        msk = F.interpolate(msk[None, None].float(), size=(self.size, self.size), mode="nearest")[0, 0].long()
        k = int(self.rng.integers(0, 4))
        img, msk = torch.rot90(img, k, (1, 2)), torch.rot90(msk, k, (0, 1))
        if self.rng.random() < 0.5:
            img, msk = img.flip(2), msk.flip(1)
        lo, hi = self.value_range
        gain = 1 + self.rng.uniform(-self.brightness, self.brightness, size=(img.shape[0], 1, 1))
        offset = self.rng.uniform(-self.brightness, self.brightness) * (hi - lo) * 0.3
        img = (img * torch.from_numpy(gain).float() + offset).clamp(lo, hi)
        return img, msk

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self._sample(*self._next_window()) for _ in range(n)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


class GridChipSampler(RandomChipSampler):
    """Windows on a regular grid (half-window overlap) over every chip, in a shuffled order that
    restarts when exhausted; no scale jitter, the same flips/rotations and radiometric jitter."""

    def __init__(self, chips: Sequence[Chip], size: int, seed: int | Sequence[int], **kwargs) -> None:
        super().__init__(chips, size, seed, **kwargs)
        self.windows = [
            (k, w.row_off, w.col_off, w.height, w.width)
            for k, chip in enumerate(self.chips)
            for w in TileGrid(chip.mask.shape[0], chip.mask.shape[1], size, size // 2)
        ]
        self.order: list[int] = []

    def _next_window(self) -> tuple[Chip, int, int, int, int]:
        if not self.order:
            self.order = list(self.rng.permutation(len(self.windows)))
        k, r, c, h, w = self.windows[self.order.pop()]
        return self.chips[k], r, c, h, w


def class_weights(chips: Sequence[Chip], n_classes: int, max_weight: float = 10.0) -> torch.Tensor:
    """Inverse-square-root frequency weights, normalised to mean 1 and capped."""
    counts = np.zeros(n_classes, np.float64)
    for c in chips:
        valid = c.mask[c.mask != IGNORE_INDEX]
        counts += np.bincount(valid, minlength=n_classes)[:n_classes]
    freq = counts / max(counts.sum(), 1)
    w = 1.0 / np.sqrt(np.maximum(freq, 1e-6))
    w = w / w.mean()
    return torch.tensor(np.minimum(w, max_weight), dtype=torch.float32)


def band_statistics(chips: Sequence[Chip]) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over the labelled pixels of all chips (skips nodata)."""
    pixels = [c.image[c.mask != IGNORE_INDEX].astype(np.float64) for c in chips]
    total = sum(len(p) for p in pixels)
    mean = sum(p.sum(0) for p in pixels) / total
    std = np.sqrt(sum(((p - mean) ** 2).sum(0) for p in pixels) / total)
    return mean.tolist(), np.maximum(std, 1e-6).tolist()
