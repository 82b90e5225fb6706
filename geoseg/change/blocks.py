"""The comparison's Dask graph: one task per block of the common grid, run by the workers.

Each ``compare_block`` task reads both dates' classes (and validity, masks, confidence) over its block of
the common grid through warped VRTs (nearest), computes the transition code per pixel, removes change
regions below the minimum mapping unit that lie inside the block, and vectorizes the block; the client
(``geoseg.change.core``) receives blocks in completion order, merges polygons across block seams and
writes. Tasks read the run folders themselves: with ``--scheduler`` they must be readable at the same
paths on every worker, as in ``geoseg run``; only the small block results travel.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from distributed import Client, as_completed
from odc.geo.geobox import GeoBox
from rasterio.features import rasterize

from geoseg.change.errors import ChangeInputError
from geoseg.change.grid import Aligned
from geoseg.change.runs import RunInfo
from geoseg.io.raster import crs_of
from geoseg.outputs.vectorize import BlockPolygons, vectorize_window
from tiles import Window

# GDAL block cache of the comparison: the default (5 % of RAM) grows with the scene through warped reads
GDAL_CACHE_MB = 256


@dataclass(frozen=True)
class CompareSpec:
    """What every block task needs: the grid, both runs, their class lookups, masks and thresholds."""

    target: GeoBox
    before: RunInfo
    after: RunInfo
    idx_before: np.ndarray  # class id -> 1-based index of BEFORE's classes (0: none)
    idx_after: np.ndarray  # AFTER's class ids -> the same indexes (through a class map)
    masks: tuple[tuple[Path, int], ...]  # (raster, band): nonzero = not compared
    min_conf: float | None  # 0-255 confidence both dates need for a change, or None
    n_classes: int
    code_dtype: str
    mmu_px: float


@dataclass
class ComparedBlock:
    window: Window
    code: np.ndarray  # transition code (0: no change / not compared)
    before: np.ndarray  # 1-based class index where compared, else 0
    after: np.ndarray
    polygons: BlockPolygons


_local = threading.local()


def _aligned(target: GeoBox) -> Aligned:
    """This worker thread's warped readers on ``target`` (rasterio datasets are not shared by threads)."""
    key = (tuple(target.affine), tuple(target.shape), crs_of(target).to_wkt())
    held = getattr(_local, "aligned", None)
    if held is None or held[0] != key:
        if held is not None:
            held[1].__exit__(None, None, None)
        _local.aligned = (key, Aligned(target).__enter__())
    return _local.aligned[1]


def classes_of(spec: CompareSpec, run: RunInfo, idx: np.ndarray, al: Aligned, win: Window) -> np.ndarray:
    """1-based class index (of BEFORE's classes) per pixel of one date over ``win`` (0 = no data)."""
    raw = al.read(run.raster, win)
    if run.task != "buildings":
        return idx[np.clip(raw, 0, 255)]
    building = run.building_class
    if building is None:
        raise ChangeInputError(f"{run.folder}: a building run without a building class")
    background = next(c.id for c in run.classes if c.id != building)
    cls = np.where(raw > 0, building, background).astype(np.int32)
    valid = al.read_valid(run.source, win) if run.source is not None else np.ones(win.shape, bool)
    extent = run.geobox.extent.to_crs(crs_of(spec.target)).geom
    valid &= rasterize(
        [extent], out_shape=win.shape, transform=win.transform(spec.target.affine), fill=0, dtype="uint8"
    ).astype(bool)
    return np.where(valid, idx[cls], 0)


def compare_block(spec: CompareSpec, win: Window) -> ComparedBlock:
    """Worker task: the transition codes, compared classes and polygons of one block."""
    h, w = int(spec.target.shape.y), int(spec.target.shape.x)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        al = _aligned(spec.target)
        b = classes_of(spec, spec.before, spec.idx_before, al, win)
        a = classes_of(spec, spec.after, spec.idx_after, al, win)
        valid = (b > 0) & (a > 0)
        for mask, band in spec.masks:
            valid &= al.read(mask, win, band=band, fill=0) == 0
        changed = valid & (b != a)
        if spec.min_conf is not None:
            for run in (spec.before, spec.after):
                changed &= al.read(run.confidence, win, fill=0) >= spec.min_conf
    n = spec.n_classes
    code = np.where(changed, 1 + (b - 1) * n + (a - 1), 0).astype(spec.code_dtype)
    sieve_interior(code, win, h, w, spec.mmu_px)
    polys = vectorize_window(code, win, spec.target.affine, (h, w), nodata=0)
    return ComparedBlock(win, code, np.where(valid, b, 0), np.where(valid, a, 0), polys)


def sieve_interior(code: np.ndarray, win: Window, h: int, w: int, mmu_px: float) -> None:
    """Set to 0, in place, the regions (4-connected pixels of one code) smaller than ``mmu_px`` that do
    not touch an internal block edge (those are decided after the seam merge)."""
    if mmu_px <= 1 or not code.any():
        return
    from skimage.measure import label

    lab = label(code, background=0, connectivity=1)
    sizes = np.bincount(lab.ravel())
    small = sizes < mmu_px - 1e-9
    small[0] = False
    edges = []
    if win.row_off > 0:
        edges.append(lab[0])
    if win.row_off + win.height < h:
        edges.append(lab[-1])
    if win.col_off > 0:
        edges.append(lab[:, 0])
    if win.col_off + win.width < w:
        edges.append(lab[:, -1])
    for e in edges:
        small[e] = False
    if small.any():
        code[small[lab]] = 0


def compared_blocks(
    client: Client, spec: CompareSpec, blocks: Sequence[Window], in_flight: int | None = None
) -> Iterator[ComparedBlock]:
    """Every block's result, in completion order; at most ``in_flight`` blocks are computed or held at a
    time (default: twice the cluster's threads), so memory does not grow with the scene."""
    limit = in_flight or max(2, 2 * (sum(client.nthreads().values()) or 1))
    [spec_future] = client.scatter([spec], broadcast=True)  # sent to the workers once
    todo = list(blocks)
    running = as_completed()
    for win in todo[:limit]:
        running.add(client.submit(compare_block, spec_future, win, pure=False))
    nxt = min(limit, len(todo))
    for fut in running:
        result = fut.result()
        fut.release()
        if nxt < len(todo):
            running.add(client.submit(compare_block, spec_future, todo[nxt], pure=False))
            nxt += 1
        yield result
