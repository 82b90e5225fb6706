"""Stratified random sample design of a map (Olofsson et al. 2014, section 5): strata = map classes.

Sample size from a target standard error of overall accuracy (Cochran 1977; Olofsson et al. 2014 eq. 13),
allocation to strata (proportional, equal, or Olofsson's: a fixed number for rare strata, the rest
proportional), and a seeded draw of pixels per stratum in two passes over row strips: class counts, then
the pixels whose rank (raster order within their class) was drawn. The sample depends only on the map,
the seed and the sizes, never on how the raster is read.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from geoseg.areas.maps import ClassCounts, ClassMap, MapError, class_pixels, count_classes
from geoseg.errors import OptionError

Allocation = Literal["olofsson", "proportional", "equal"]
DEFAULT_EXPECTED_UA = 0.85
DEFAULT_TARGET_SE = 0.01  # standard error of overall accuracy, Olofsson et al.'s example


def sample_size(
    weights: Mapping[int, float],
    expected_ua: Mapping[int, float],
    target_se: float,
    total_units: int | None = None,
) -> int:
    """Total sample size for a target standard error of overall accuracy (Olofsson et al. 2014, eq. 13):
    ``n = (Σ W_i S_i)² / (S(Ô)² + Σ W_i S_i² / N)`` with ``S_i = sqrt(U_i (1 - U_i))`` from the expected
    user's accuracies ``U_i``; the finite-population term is dropped without ``total_units`` (N)."""
    if not 0 < target_se < 1:
        raise OptionError(f"target standard error must be in (0, 1), got {target_se}")
    s = {k: math.sqrt(expected_ua[k] * (1 - expected_ua[k])) for k in weights}
    num = sum(weights[k] * s[k] for k in weights) ** 2
    den = target_se**2 + (sum(weights[k] * s[k] ** 2 for k in weights) / total_units if total_units else 0.0)
    return max(1, math.ceil(num / den - 1e-9))


def _round_largest_remainder(shares: dict[int, float], total: int) -> dict[int, int]:
    """Integers proportional to ``shares`` summing to ``total`` (largest remainders; ties by class id)."""
    s = sum(shares.values())
    if total <= 0 or s <= 0:
        return {k: 0 for k in shares}
    exact = {k: total * v / s for k, v in shares.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    rest = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:rest]:
        out[k] += 1
    return out


def allocate(
    pixels: Mapping[int, int],
    weights: Mapping[int, float],
    n: int,
    method: Allocation = "olofsson",
    min_per_stratum: int = 50,
) -> dict[int, int]:
    """Sample size per stratum.

    - ``proportional``: ``n × W_h``, raised to ``min_per_stratum`` where smaller;
    - ``equal``: ``n / H`` each;
    - ``olofsson``: strata whose proportional share is under ``min_per_stratum`` (rare strata, e.g.
      change classes) get ``min_per_stratum`` each, the rest of ``n`` is shared proportionally among the
      others (Olofsson et al. 2014: 50-100 for rare strata).

    Never more than a stratum's pixels (such strata are taken whole); at least two per stratum (the
    variance estimators need two).
    """
    classes = sorted(k for k in pixels if pixels[k] > 0)
    if not classes:
        raise OptionError("no strata: the map has no class to sample")
    if method == "equal":
        out = _round_largest_remainder({k: 1.0 for k in classes}, n)
    elif method == "proportional":
        out = _round_largest_remainder({k: weights[k] for k in classes}, n)
        out = {k: max(v, min_per_stratum) for k, v in out.items()}
    elif method == "olofsson":
        rare: set[int] = set()
        while True:
            common = [k for k in classes if k not in rare]
            rest = n - min_per_stratum * len(rare)
            share = _round_largest_remainder({k: weights[k] for k in common}, max(rest, 0))
            newly = {k for k in common if share[k] < min_per_stratum}
            if not newly or not common:
                break
            rare |= newly
        if common:
            out = {k: min_per_stratum for k in rare} | share
        else:  # n too small to give every stratum the minimum
            out = _round_largest_remainder({k: 1.0 for k in classes}, n)
    else:
        raise OptionError(f"unknown allocation {method!r} (olofsson, proportional, equal)")
    return {k: int(min(max(out[k], 2), pixels[k])) for k in classes}


@dataclass
class Stratum:
    map_class: int
    map_name: str
    pixels: int
    area_m2: float
    weight: float
    n: int
    expected_ua: float


@dataclass
class SampleDesign:
    """The strata and the drawn points of a stratified random sample of a map."""

    map: ClassMap
    strata: list[Stratum]
    seed: int
    allocation: str
    target_se: float | None
    min_per_stratum: int
    sample_id: np.ndarray  # (n,) 1..n in a random order
    map_class: np.ndarray  # (n,)
    row: np.ndarray  # (n,) pixel row / column of each point
    col: np.ndarray
    created: str = ""

    @property
    def n(self) -> int:
        return int(len(self.sample_id))

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of the pixel centres."""
        t = self.map.transform
        c, r = self.col + 0.5, self.row + 0.5
        return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f


def draw_ranks(pixels: Mapping[int, int], n_per: Mapping[int, int], seed: int) -> dict[int, np.ndarray]:
    """Per stratum, the sorted ranks (0-based, raster order within the class) of the sampled pixels."""
    rng = np.random.default_rng(seed)
    return {
        k: np.sort(rng.choice(int(pixels[k]), size=int(n_per[k]), replace=False)).astype(np.int64)
        for k in sorted(n_per)
    }


def locate_ranks(
    cmap: ClassMap, ranks: Mapping[int, np.ndarray], rows: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel rows/columns of the drawn ranks: one pass over row strips in raster order. Per strip only the
    classes with a drawn rank inside it are located (one comparison each)."""
    wanted = {k: v for k, v in ranks.items() if len(v)}
    seen = dict.fromkeys(wanted, 0)
    out_cls: list[np.ndarray] = []
    out_pos: list[np.ndarray] = []
    for r0, strip in cmap.strips(rows):
        present = class_pixels(strip, cmap)
        for k, c in present.items():
            if k not in wanted:
                continue
            lo = seen[k]
            seen[k] = lo + c
            a, b = np.searchsorted(wanted[k], [lo, lo + c])
            if b > a:
                where = np.flatnonzero(strip.ravel() == k)
                pos = where[wanted[k][a:b] - lo] + r0 * cmap.width
                out_cls.append(np.full(b - a, k, dtype=np.int64))
                out_pos.append(pos.astype(np.int64))
    for k, r in wanted.items():
        if seen[k] <= r[-1]:
            raise MapError(f"{cmap.path}: the map changed while it was read (class {k})")
    cls = np.concatenate(out_cls) if out_cls else np.zeros(0, np.int64)
    pos = np.concatenate(out_pos) if out_pos else np.zeros(0, np.int64)
    return cls, pos // cmap.width, pos % cmap.width


def design_sample(
    cmap: ClassMap,
    *,
    n: int | None = None,
    seed: int = 0,
    allocation: Allocation = "olofsson",
    min_per_stratum: int = 50,
    target_se: float = DEFAULT_TARGET_SE,
    expected_ua: Mapping[int, float] | float = DEFAULT_EXPECTED_UA,
    per_stratum: Mapping[int, int] | None = None,
    counts: ClassCounts | None = None,
    rows: int | None = None,
) -> SampleDesign:
    """Draw a stratified random sample of ``cmap``'s pixels (strata = its classes).

    The total is ``n``, or from ``target_se`` and the expected user's accuracies (eq. 13); ``per_stratum``
    fixes the sizes instead. ``rows`` sets the strip height (memory), which never changes the sample.
    """
    counts = counts or count_classes(cmap, rows)
    classes = counts.classes
    total_area = counts.total_area_m2
    weights = {k: counts.area_m2[k] / total_area for k in classes}
    if isinstance(expected_ua, Mapping):
        unknown = sorted(set(expected_ua) - set(classes))
        if unknown:
            raise MapError(f"{cmap.path}: expected accuracy given for classes not in the map: {unknown}")
        ua = {k: float(expected_ua.get(k, DEFAULT_EXPECTED_UA)) for k in classes}
    else:
        ua = dict.fromkeys(classes, float(expected_ua))
    if any(not 0 < v < 1 for v in ua.values()):
        raise MapError("expected user's accuracies must be between 0 and 1")
    used_se: float | None = None
    if per_stratum is not None:
        unknown = sorted(set(per_stratum) - set(classes))
        if unknown:
            raise MapError(f"{cmap.path}: sample sizes given for classes not in the map: {unknown}")
        n_per = {k: int(min(max(per_stratum.get(k, 0), 0), counts.pixels[k])) for k in classes}
        allocation_name = "fixed"
    else:
        if n is None:
            used_se = target_se
            n = sample_size(weights, ua, target_se, sum(counts.pixels.values()))
        if n < 1:
            raise MapError(f"sample size must be positive, got {n}")
        n_per = allocate(counts.pixels, weights, n, allocation, min_per_stratum)
        allocation_name = allocation
    ranks = draw_ranks(counts.pixels, n_per, seed)
    cls, row, col = locate_ranks(cmap, ranks, rows)
    order = np.lexsort((col, row, cls))
    cls, row, col = cls[order], row[order], col[order]
    ids = np.random.default_rng([seed, 1]).permutation(len(cls)) + 1  # labelling order reveals nothing
    strata = [
        Stratum(k, cmap.name(k), counts.pixels[k], counts.area_m2[k], weights[k], n_per[k], ua[k])
        for k in classes
    ]
    return SampleDesign(
        map=cmap,
        strata=strata,
        seed=seed,
        allocation=allocation_name,
        target_se=used_se,
        min_per_stratum=min_per_stratum,
        sample_id=ids,
        map_class=cls,
        row=row,
        col=col,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
