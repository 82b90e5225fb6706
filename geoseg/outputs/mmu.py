"""Minimum mapping unit of ``geoseg run``: regions smaller than the MMU merge into their surroundings,
block by block, with the same result as on the whole scene.

Rule (one pass, local): a region (4-connected pixels of one class) of fewer than ``m`` pixels takes the
class that most of its outside 4-neighbour pixels of *large* regions have (ties: the lower class id); a
small region touching no large region (only nodata and other small regions, e.g. speckle along a
scene's ragged nodata edge) keeps its class; nodata is never changed and never a target. The merged
raster is then vectorized as usual.

Why blocks give the whole-scene result: a region of fewer than ``m`` pixels spans fewer than ``m`` rows
and columns. Each block is sieved inside a window reaching ``halo = 2m + 2`` pixels beyond it, so a
small region meeting the block lies, with its neighbours, wholly inside the window (its size and
boundary are exact), and a neighbour cut by the window's edge spans at least ``m + 2`` pixels inside it,
so it is large both in the window and in the scene. Only the block's own pixels are kept.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.measure import label

from tiles import Window


def mmu_pixels(mmu_m2: float, gsd_m: float) -> float:
    return mmu_m2 / (gsd_m * gsd_m) if gsd_m > 0 else 0.0


def halo_for(mmu_px: float) -> int:
    return 2 * math.ceil(mmu_px) + 2


def sieve(labels: np.ndarray, mmu_px: float, nodata: int = 0) -> np.ndarray:
    """``labels`` with regions of fewer than ``mmu_px`` pixels merged into their surroundings (see the
    module docstring for the rule)."""
    if mmu_px <= 1 or labels.size == 0:
        return labels
    lab = label(labels, background=nodata, connectivity=1)
    sizes = np.bincount(lab.ravel())
    small = sizes < mmu_px
    small[0] = False
    if not small.any():
        return labels
    big = ~small
    big[0] = False  # nodata is no target
    # outside neighbour pairs (small region, neighbour class, neighbour is large) in 4 directions
    regions, classes, large = [], [], []
    for a, b in (
        (lab[:, :-1], lab[:, 1:]),
        (lab[:, 1:], lab[:, :-1]),
        (lab[:-1], lab[1:]),
        (lab[1:], lab[:-1]),
    ):
        sel = small[a] & (a != b) & (b != 0)
        regions.append(a[sel])
        nb = b[sel]
        large.append(big[nb])
        classes.append(nb)
    r = np.concatenate(regions)
    nb_lab = np.concatenate(classes)
    is_large = np.concatenate(large)
    if r.size == 0:
        return labels
    cls_of_region = np.zeros(len(sizes), labels.dtype)
    cls_of_region[lab.ravel()] = labels.ravel()  # each region has one class
    ncls = int(cls_of_region.max()) + 1
    key = r.astype(np.int64) * ncls + cls_of_region[nb_lab].astype(np.int64)
    uniq, inverse = np.unique(key, return_inverse=True)
    large_counts = np.bincount(inverse, weights=is_large, minlength=len(uniq))
    # only large neighbours count (two small regions would swap classes); ties -> the lower class id
    keep = large_counts > 0
    uniq, score = uniq[keep], large_counts[keep]
    if uniq.size == 0:
        return labels
    reg, cls = uniq // ncls, uniq % ncls
    order = np.lexsort((cls, -score, reg))
    first = order[np.r_[True, reg[order][1:] != reg[order][:-1]]]
    new_cls = cls_of_region.copy()
    new_cls[reg[first]] = cls[first].astype(labels.dtype)  # only small regions have neighbour pairs
    new_cls[0] = nodata
    out = new_cls[lab]
    out[lab == 0] = labels[lab == 0]
    return out


class BlockSiever:
    """Sieves each output block once the blocks its halo reaches are in; holds only those blocks' labels.

    ``add`` takes a finished block's labels and returns the blocks now ready to sieve; ``window_of`` gives
    a ready block's haloed window, ``done`` releases what no pending block needs.
    """

    def __init__(self, blocks: list[Window], height: int, width: int, mmu_px: float) -> None:
        self.blocks = blocks
        self.mmu_px = mmu_px
        self.halo = halo_for(mmu_px)
        self.shape = (height, width)
        self.windows: list[Window] = []
        self.needs: list[list[int]] = []
        for b in blocks:
            r0, c0 = max(0, b.row_off - self.halo), max(0, b.col_off - self.halo)
            r1, c1 = min(height, b.row_stop + self.halo), min(width, b.col_stop + self.halo)
            win = Window(r0, c0, r1 - r0, c1 - c0)
            self.windows.append(win)
            self.needs.append([j for j, o in enumerate(blocks) if _overlap(win, o)])
        self.users = [0] * len(blocks)
        for deps in self.needs:
            for j in deps:
                self.users[j] += 1
        self.labels: dict[int, np.ndarray] = {}
        self.pending = set(range(len(blocks)))

    def add(self, index: int, labels: np.ndarray) -> list[int]:
        """Store a block's labels; the blocks whose halo is now complete (to pass to ``window_of``)."""
        self.labels[index] = labels
        ready = [i for i in sorted(self.pending) if all(j in self.labels for j in self.needs[i])]
        self.pending.difference_update(ready)
        return ready

    def window_of(self, i: int) -> tuple[np.ndarray, Window]:
        """The labels of block ``i``'s haloed window (a mosaic of stored blocks), and the block inside it."""
        win = self.windows[i]
        dtype = self.labels[self.needs[i][0]].dtype
        mosaic = np.zeros(win.shape, dtype)
        for j in self.needs[i]:
            o = self.blocks[j]
            part = o.intersection(win)
            if part is None:  # needs[i] lists the blocks that overlap the window
                continue
            mosaic[part.relative_to(win).slices()] = self.labels[j][part.relative_to(o).slices()]
        return mosaic, self.blocks[i].relative_to(win)

    def done(self, i: int) -> None:
        """Block ``i`` is sieved: release the labels no pending block needs any more."""
        for j in self.needs[i]:
            self.users[j] -= 1
            if self.users[j] == 0:
                self.labels.pop(j, None)


def sieve_core(mosaic: np.ndarray, core: Window, mmu_px: float, nodata: int = 0) -> np.ndarray:
    """Sieve a haloed window and return its ``core`` (a block's own pixels)."""
    return np.ascontiguousarray(sieve(mosaic, mmu_px, nodata)[core.slices()])


def _overlap(a: Window, b: Window) -> bool:
    rows = a.row_off < b.row_stop and b.row_off < a.row_stop
    return rows and a.col_off < b.col_stop and b.col_off < a.col_stop
