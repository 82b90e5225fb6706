"""Random window sampling with scale, flip/rotation and radiometric augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from geoseg.train.chips import IGNORE_INDEX, Chip


class RandomChipSampler:
    """Draws augmented (image, mask) batches from chips, weighting chips by area.

    ``scale_range`` resamples each window by a log-uniform factor so the model tolerates
    imagery whose ground sample distance differs from the training data's.
    """

    def __init__(
        self,
        chips: Sequence[Chip],
        size: int,
        seed: int,
        scale_range: tuple[float, float] = (0.5, 2.0),
        brightness: float = 0.15,
    ) -> None:
        self.chips = list(chips)
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.scale_range = scale_range
        self.brightness = brightness
        areas = np.array([c.mask.size for c in self.chips], float)
        self.p = areas / areas.sum()

    def _window(self, chip: Chip) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = np.log(self.scale_range[0]), np.log(self.scale_range[1])
        scale = float(np.exp(self.rng.uniform(lo, hi)))
        h, w = chip.mask.shape
        src = int(round(self.size / scale))
        src = max(8, min(src, h, w))
        r = int(self.rng.integers(0, h - src + 1))
        c = int(self.rng.integers(0, w - src + 1))
        img = torch.from_numpy(np.ascontiguousarray(chip.image[r : r + src, c : c + src])).permute(2, 0, 1)
        msk = torch.from_numpy(np.ascontiguousarray(chip.mask[r : r + src, c : c + src]))
        img = F.interpolate(
            img[None].float(), size=(self.size, self.size), mode="bilinear", align_corners=False
        )[0]
        msk = F.interpolate(msk[None, None].float(), size=(self.size, self.size), mode="nearest")[0, 0].long()
        k = int(self.rng.integers(0, 4))
        img, msk = torch.rot90(img, k, (1, 2)), torch.rot90(msk, k, (0, 1))
        if self.rng.random() < 0.5:
            img, msk = img.flip(2), msk.flip(1)
        gain = 1 + self.rng.uniform(-self.brightness, self.brightness, size=(img.shape[0], 1, 1))
        offset = self.rng.uniform(-self.brightness, self.brightness) * 255 * 0.3
        img = (img * torch.from_numpy(gain).float() + offset).clamp(0, 255)
        return img, msk

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.rng.choice(len(self.chips), size=n, p=self.p)
        pairs = [self._window(self.chips[i]) for i in idx]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


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
    """Per-band mean and standard deviation over all chip pixels."""
    total = sum(c.image.shape[0] * c.image.shape[1] for c in chips)
    s = sum(c.image.reshape(-1, c.image.shape[2]).astype(np.float64).sum(0) for c in chips)
    mean = s / total
    ss = sum(((c.image.reshape(-1, c.image.shape[2]) - mean) ** 2).sum(0) for c in chips)
    std = np.sqrt(ss / total)
    return mean.tolist(), np.maximum(std, 1e-6).tolist()
