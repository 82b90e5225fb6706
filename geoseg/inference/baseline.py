"""Classical, model-free baselines: ``--model baseline:landcover`` and ``--model baseline:buildings``.

They give a floor that a trained model has to beat, and work on any imagery without weights.

Inputs are raw pixel values of any dtype and scale (uint8 drone RGB, uint16 panchromatic, float
reflectance): spectral indices are ratios of the raw values (scale-free), and brightness is scaled by
per-image percentiles of the valid pixels. Band roles come from lowercase band names; with unknown names
(``""``) the order is assumed to be R, G, B[, NIR] for 3 or more bands, and a single band is panchromatic.

* landcover: vegetation from NDVI (red + NIR) or excess green on chromaticity (RGB), fixed thresholds;
  water from NDWI (green + NIR) or a dark, smooth, pond-sized, blue-dominant or near-black rule (RGB);
  buildings from the buildings baseline at <= ``MAX_BUILDING_GSD_M``; everything else is "land". A pixel
  rule cannot tell roads from bare land or flat roofs, so "road" is never predicted. Single-band
  (panchromatic) imagery has no spectral cue for vegetation, so none is predicted there, and its water rule
  is much stricter (very dark, very smooth, >= 1000 m²).
* buildings: watershed segments of the image gradient (markers: low-gradient areas), kept when they are
  not vegetation, not dark (shadow, water), of building size in m² and compact (solidity, elongation),
  then cleaned up morphologically. Works on colour drone imagery; on panchromatic imagery of wooded areas
  it mostly finds tree crowns (no colour to exclude them).

Both are deterministic. Finer imagery is block-averaged to ~``WORK_GSD_M`` first: a 2048 x 2048 drone RGB
image takes about a second, a 2048 x 2048 panchromatic one at 0.5 m about 5 s (two busy CPU cores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import shapely
from scipy import ndimage
from skimage.segmentation import watershed

from geoseg.errors import OptionError
from geoseg.io.bandroles import role_of
from geoseg.models.meta import ClassInfo

# -------------------------------------------------------------------------------------- parameters

DEFAULT_GSD_M = 0.5  # assumed ground sample distance when the scene's is unknown
WORK_GSD_M = 0.25  # finer imagery is block-averaged to about this before segmenting
MAX_BUILDING_GSD_M = 2.0  # the landcover baseline looks for buildings only in imagery this fine or finer
# Fixed vegetation thresholds (not Otsu's: a per-image threshold would make results depend on the tile
# extent, and splits an all-green crop in two): excess green on chromaticity (2g - r - b) / (r + g + b)
# (in [-1, 2]; measured on the Kampala sample: 89% of a vegetated crop, 4% of a roof crop), and NDVI.
EXG_MIN = 0.1
EXG_DAMPING = 0.05  # added to r + g + b, as a fraction of its 99th percentile
NDVI_MIN = 0.3
NDWI_MIN = 0.0  # McFeeters NDWI (green - nir) / (green + nir) above this is water
# Without NIR, water is dark (brightness below this, on the image's 1-99 % percentile scale), smooth (local
# standard deviation over ~3 m below this) and at least this large (m²): (max brightness, max std, min area).
# RGB also needs blue >= green and blue > red; single-band imagery has only brightness and texture, so its
# rule is much stricter (forest and building shadows are dark and smooth too).
WATER_RULE_RGB = (0.35, 0.05, 200.0)
WATER_BLACK = 0.12  # RGB pixels darker than this need not be blue to be water
WATER_RULE_PAN = (0.10, 0.03, 1000.0)
BUILDING_AREA_M2 = (12.0, 2500.0)  # plausible area of one building (or roof facet)
BUILDING_MIN_SOLIDITY = 0.8
BUILDING_MAX_ELONGATION = 5.0  # major / minor axis
BUILDING_MAX_VEG_FRACTION = 0.3
BUILDING_DARK_QUANTILE = 0.25  # segments darker than this quantile of the image's brightness are shadow,
BUILDING_MIN_BRIGHTNESS = 0.15  # ... or than this (1-99 % percentile scale: images that are mostly water)


class Baseline(Protocol):
    """A model-free predictor with the same outputs as a checkpoint: class indices into ``classes``."""

    name: str
    task: Literal["landcover", "buildings"]
    classes: list[ClassInfo]
    uses: tuple[str, ...]  # band roles it reads where the scene has them (red, green, blue, nir, pan)
    needs: tuple[tuple[str, ...], ...]  # it runs where the scene has every role of one of these sets

    def predict(
        self, image: np.ndarray, valid: np.ndarray, bands: Sequence[str], gsd_m: float | None
    ) -> np.ndarray: ...


LANDCOVER_CLASSES = [
    ClassInfo(id=1, name="building", color="#E3342F"),
    ClassInfo(id=2, name="land", color="#D9C8A9"),
    ClassInfo(id=3, name="road", color="#6C6C6C"),
    ClassInfo(id=4, name="vegetation", color="#38A169"),
    ClassInfo(id=5, name="water", color="#3182CE"),
]
BUILDINGS_CLASSES = [
    ClassInfo(id=1, name="background", color="#D9C8A9"),
    ClassInfo(id=2, name="building", color="#E3342F"),
]

# --------------------------------------------------------------------------------------- band roles


def band_roles(bands: Sequence[str] | None, count: int) -> dict[str, int]:
    """Roles red/green/blue/nir/pan -> band index, by name (``geoseg.io.bandroles``: descriptions, aliases
    such as B04/B08, case-insensitive); positional R,G,B[,NIR] when no name is known."""
    roles: dict[str, int] = {}
    for i, name in enumerate(list(bands or [])[:count]):
        role = role_of(name)
        if role == "nir08":
            role = "nir" if "nir" not in roles else None
        if role in ("red", "green", "blue", "nir", "pan") and role not in roles:
            roles[role] = i
    if roles:
        return roles
    if count >= 3:
        return {"red": 0, "green": 1, "blue": 2} | ({"nir": 3} if count >= 4 else {})
    return {"pan": 0}


@dataclass
class _Scene:
    """Float32 views of one image: colour bands (raw, clipped at 0), brightness in ~[0, 1], valid mask."""

    valid: np.ndarray
    red: np.ndarray | None = None
    green: np.ndarray | None = None
    blue: np.ndarray | None = None
    nir: np.ndarray | None = None
    gray: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @property
    def rgb(self) -> bool:
        return self.rgb_bands() is not None

    def rgb_bands(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(red, green, blue) where the image has all three."""
        if self.red is None or self.green is None or self.blue is None:
            return None
        return self.red, self.green, self.blue


def _sample(values: np.ndarray, valid: np.ndarray, limit: int = 1 << 20) -> np.ndarray:
    """Valid values, subsampled on a regular stride to at most ~``limit`` (deterministic)."""
    v = values[valid]
    return v[:: max(1, v.size // limit)]


def _scene(image: np.ndarray, valid: np.ndarray, bands: Sequence[str] | None) -> _Scene:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    valid = np.asarray(valid, bool) & np.all(np.isfinite(image), axis=0)
    roles = band_roles(bands, image.shape[0])
    get = {k: np.clip(np.nan_to_num(image[i].astype(np.float32)), 0, None) for k, i in roles.items()}
    s = _Scene(valid, get.get("red"), get.get("green"), get.get("blue"), get.get("nir"))
    visible = [get[k] for k in ("red", "green", "blue") if k in get]
    raw = get["pan"] if "pan" in get else sum(visible) / len(visible) if visible else next(iter(get.values()))
    if valid.any():
        lo, hi = np.percentile(_sample(raw, valid), [1, 99])
    else:
        lo, hi = 0.0, 1.0
    s.gray = np.clip((raw - lo) / max(hi - lo, 1e-12), 0, 1).astype(np.float32)
    return s


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num((a - b) / (a + b)).astype(np.float32)


def _vegetation(s: _Scene) -> np.ndarray:
    """Vegetation: NDVI > ``NDVI_MIN`` (red + NIR), or excess green > ``EXG_MIN`` and green >= blue (RGB)."""
    if s.red is not None and s.nir is not None:
        return (_ratio(s.nir, s.red) > NDVI_MIN) & s.valid
    if (rgb := s.rgb_bands()) is not None:
        red, green, blue = rgb
        total = red + green + blue
        # damped chromaticity: the constant keeps the noise of near-black pixels (deep water, JPEG) small
        bright = float(np.percentile(_sample(total, s.valid), 99)) if s.valid.any() else 1.0
        damp = EXG_DAMPING * max(bright, 1e-12)
        exg = ((2 * green - red - blue) / (total + damp)).astype(np.float32)
        return (exg > EXG_MIN) & (green >= blue) & s.valid
    return np.zeros_like(s.valid)


def _remove_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[lab]


def _water(s: _Scene, gsd_m: float) -> np.ndarray:
    """Water: NDWI > 0 (green + NIR), else dark smooth areas of pond size (blue-dominant for RGB)."""
    if s.green is not None and s.nir is not None:
        return (_ratio(s.green, s.nir) > NDWI_MIN) & s.valid
    max_bright, max_std, min_area = WATER_RULE_RGB if s.rgb else WATER_RULE_PAN
    water = (s.gray < max_bright) & s.valid
    if (rgb := s.rgb_bands()) is not None:  # blue-dominant, or near-black (deep water: no reliable colour)
        red, green, blue = rgb
        water &= ((blue >= green) & (blue > red)) | (s.gray < WATER_BLACK)
    size = max(3, int(round(3.0 / gsd_m)) | 1)
    mean = ndimage.uniform_filter(s.gray, size)
    var = ndimage.uniform_filter(s.gray * s.gray, size) - mean * mean
    water &= var < max_std**2
    water = ndimage.binary_opening(water, iterations=1)
    return _remove_small(water, min_area / gsd_m**2)


# ------------------------------------------------------------------------------------------ buildings


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    h, w = a.shape
    ph, pw = -h % f, -w % f
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), mode="edge")
    return a.reshape(a.shape[0] // f, f, a.shape[1] // f, f).mean(axis=(1, 3), dtype=np.float32)


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 1)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def _elongation(seg: np.ndarray, idx: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Major / minor axis ratio of each segment (square root of the covariance eigenvalue ratio)."""
    y, x = np.indices(seg.shape, dtype=np.float64)
    n = np.maximum(count, 1)
    mx, my = ndimage.sum_labels(x, seg, idx) / n, ndimage.sum_labels(y, seg, idx) / n
    cxx = ndimage.sum_labels(x * x, seg, idx) / n - mx * mx + 1 / 12
    cyy = ndimage.sum_labels(y * y, seg, idx) / n - my * my + 1 / 12
    cxy = ndimage.sum_labels(x * y, seg, idx) / n - mx * my
    half = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    big, small = (cxx + cyy) / 2 + half, (cxx + cyy) / 2 - half
    return np.sqrt(big / np.maximum(small, 1e-12))


def _solidity(seg: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Solidity of segments 1..n of ``seg`` (0 = skip): pixel count / area of the convex hull of the pixel
    squares (hull of the boundary pixel centres, plus the Minkowski term for the unit square)."""
    n = len(count)
    out = np.zeros(n, np.float64)
    inner = seg.copy()
    inner[1:-1, 1:-1] *= (
        (seg[1:-1, 1:-1] == seg[:-2, 1:-1])
        & (seg[1:-1, 1:-1] == seg[2:, 1:-1])
        & (seg[1:-1, 1:-1] == seg[1:-1, :-2])
        & (seg[1:-1, 1:-1] == seg[1:-1, 2:])
    ) == 0
    ys, xs = np.nonzero(inner)
    if len(ys) == 0:
        return out
    # the hull only needs the leftmost and rightmost boundary pixel of each segment on each row
    key = inner[ys, xs].astype(np.int64) * seg.shape[0] + ys
    order = np.lexsort((xs, key))
    cut = np.flatnonzero(np.diff(key[order])) + 1
    ends = np.concatenate([order[np.r_[0, cut]], order[np.r_[cut - 1, len(order) - 1]]])
    ends = ends[np.argsort(key[ends], kind="stable")]
    ids, index = np.unique(inner[ys[ends], xs[ends]], return_inverse=True)
    points = shapely.multipoints(np.stack([xs[ends], ys[ends]], axis=1).astype(np.float64), indices=index)
    x0, y0, x1, y1 = shapely.bounds(points).T
    hull = shapely.area(shapely.convex_hull(points)) + (x1 - x0) + (y1 - y0) + 1
    out[ids - 1] = count[ids - 1] / hull
    return out


def _buildings(s: _Scene, gsd_m: float, vegetation: np.ndarray | None = None) -> np.ndarray:
    """Building mask (H, W) from gradient-watershed segments filtered by colour, size and shape."""
    h, w = s.valid.shape
    if not s.valid.any():
        return np.zeros((h, w), bool)
    f = max(1, int(round(WORK_GSD_M / gsd_m)))
    g = gsd_m * f  # working ground sample distance
    px = g * g
    valid = _block_mean(s.valid.astype(np.float32), f) > 0.5
    veg = vegetation if vegetation is not None else _vegetation(s)
    veg = _block_mean(veg.astype(np.float32), f)
    sigma = max(0.7, 0.5 / g)
    rgb = s.rgb_bands()
    channels = list(rgb) if rgb is not None else [s.gray]
    grad = np.zeros(valid.shape, np.float32)
    for c in channels:
        c = _block_mean(c, f)
        lo, hi = np.percentile(_sample(c, valid), [1, 99])
        c = ndimage.gaussian_filter((c - lo) / max(hi - lo, 1e-12), sigma)
        grad += np.hypot(ndimage.sobel(c, 0), ndimage.sobel(c, 1))
    gray = _block_mean(s.gray, f)

    # markers: cores of the low-gradient (homogeneous) areas
    low = (grad < np.percentile(_sample(grad, valid), 40)) & valid
    low = ndimage.binary_erosion(low, _disk(round(0.5 / g)))
    markers, _ = ndimage.label(low)
    seg = watershed(grad, markers, mask=valid)
    n = int(seg.max())
    if n == 0:
        return np.zeros((h, w), bool)

    idx = np.arange(1, n + 1)
    area = np.bincount(seg.ravel(), minlength=n + 1)[1:] * px
    veg_frac = ndimage.mean(veg, seg, idx)
    bright = ndimage.mean(gray, seg, idx)
    dark = max(float(np.quantile(_sample(gray, valid), BUILDING_DARK_QUANTILE)), BUILDING_MIN_BRIGHTNESS)
    cand = (
        (area >= BUILDING_AREA_M2[0])
        & (area <= BUILDING_AREA_M2[1])
        & (veg_frac < BUILDING_MAX_VEG_FRACTION)
        & (bright > dark)
    )
    # elongation from second moments (vectorised), then solidity for the survivors
    cand &= _elongation(seg, idx, area / px) <= BUILDING_MAX_ELONGATION
    lut = np.zeros(n + 1, np.int32)
    lut[1:][cand] = idx[cand]
    keep = np.zeros(n + 1, bool)
    keep[1:] = cand & (_solidity(lut[seg], area / px) >= BUILDING_MIN_SOLIDITY)
    mask = keep[seg]

    # cleanup: merge facets of one roof, drop slivers, fill small holes
    r = round(0.5 / g)
    mask = ndimage.binary_closing(mask, _disk(r)) & valid
    mask = ndimage.binary_opening(mask, _disk(r))
    holes = ndimage.binary_fill_holes(mask) & ~mask
    mask |= holes & ~_remove_small(holes, BUILDING_AREA_M2[0] / px)
    mask = _remove_small(mask, BUILDING_AREA_M2[0] / px)
    if f > 1:
        mask = np.repeat(np.repeat(mask, f, axis=0), f, axis=1)[:h, :w]
    return mask & s.valid


# ---------------------------------------------------------------------------------------- baselines


def _gsd(gsd_m: float | None) -> float:
    return float(gsd_m) if gsd_m and gsd_m > 0 and np.isfinite(gsd_m) else DEFAULT_GSD_M


class LandcoverBaseline:
    """building / land / road / vegetation / water from spectral rules (see the module docstring)."""

    name = "baseline:landcover"
    task: Literal["landcover", "buildings"] = "landcover"
    # the band roles it uses where the scene has them, and the sets of which it needs one in full
    uses: tuple[str, ...] = ("red", "green", "blue", "nir")
    needs: tuple[tuple[str, ...], ...] = (("red", "green", "blue"), ("red", "green", "nir"), ("pan",))

    def __init__(self) -> None:
        self.classes = list(LANDCOVER_CLASSES)

    def predict(
        self, image: np.ndarray, valid: np.ndarray, bands: Sequence[str], gsd_m: float | None
    ) -> np.ndarray:
        """(H, W) uint8 indices into ``classes``: 0 building, 1 land, 2 road (never), 3 vegetation, 4 water"""
        s = _scene(image, valid, bands)
        gsd = _gsd(gsd_m)
        out = np.full(s.valid.shape, 1, np.uint8)
        veg = _vegetation(s)
        if gsd <= MAX_BUILDING_GSD_M:
            out[_buildings(s, gsd, veg)] = 0
        out[veg] = 3
        out[_water(s, gsd)] = 4
        return out


class BuildingsBaseline:
    """background / building from gradient-watershed segments (see the module docstring)."""

    name = "baseline:buildings"
    task: Literal["landcover", "buildings"] = "buildings"
    uses: tuple[str, ...] = ("red", "green", "blue", "nir")
    needs: tuple[tuple[str, ...], ...] = (("red", "green", "blue"), ("pan",))

    def __init__(self) -> None:
        self.classes = list(BUILDINGS_CLASSES)

    def predict(
        self, image: np.ndarray, valid: np.ndarray, bands: Sequence[str], gsd_m: float | None
    ) -> np.ndarray:
        """(H, W) uint8 indices into ``classes``: 0 background, 1 building."""
        s = _scene(image, valid, bands)
        return _buildings(s, _gsd(gsd_m)).astype(np.uint8)


BASELINES: dict[str, Callable[[], Baseline]] = {
    LandcoverBaseline.name: LandcoverBaseline,
    BuildingsBaseline.name: BuildingsBaseline,
}


def get_baseline(spec: str) -> Baseline:
    """The baseline named by ``spec`` ("baseline:landcover" or "baseline:buildings")."""
    key = spec.strip().lower()
    if key not in BASELINES:
        raise OptionError(f"unknown baseline {spec!r}; choose one of: {', '.join(BASELINES)}")
    return BASELINES[key]()
