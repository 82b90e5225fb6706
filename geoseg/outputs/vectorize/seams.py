"""Seams: polygons cut by block edges merged back into the whole-scene polygons.

Seams: ``merge_seams`` takes the polygons that touch an internal block edge back to integer scene pixel
coordinates (exact), cancels the boundary edges that same-class pieces share across a seam, groups the pieces
that met, cuts their rings into chains there (and where two pieces of a group touch diagonally), and links
chains and leftover edge bits into rings with the same turn rule. The merged scene is the same set of polygons
as a whole-raster vectorization.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import shapely
from affine import Affine

from geoseg.errors import OutputError
from geoseg.outputs.vectorize.trace import BlockPolygons, Polys, Runs, _apply, _cycle_order, _cycles, _relabel

# ---------------------------------------------------------------------------------------------- seams


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label (smallest member) of each of n nodes, given (k, 2) edges."""
    lab = np.arange(n)
    i, j = pairs[:, 0], pairs[:, 1]
    while True:
        li, lj = lab[i], lab[j]
        differ = li != lj
        if not differ.any():
            return lab
        li, lj = li[differ], lj[differ]
        np.minimum.at(lab, np.maximum(li, lj), np.minimum(li, lj))  # hook the larger root to the smaller
        while True:  # then flatten the trees
            up = lab[lab]
            if np.array_equal(up, lab):
                break
            lab = up


def _line_keys(fwd: Runs, bwd: Runs, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Sortable keys of (line, value) for two run lists; a run [a, b) is then [key + a, key + b)."""
    _, vi = np.unique(np.concatenate((fwd[3], bwd[3])), return_inverse=True)
    n_vals = int(vi.max()) + 1 if len(vi) else 1
    if (max(int(fwd[0].max(initial=0)), int(bwd[0].max(initial=0))) + 1) * n_vals * span >= 2**62:
        raise OutputError("merge_seams: scene too large for 64-bit edge keys")
    return (fwd[0] * n_vals + vi[: len(fwd[0])]) * span, (bwd[0] * n_vals + vi[len(fwd[0]) :]) * span


def _overlaps(fwd: Runs, bwd: Runs, span: int) -> tuple[np.ndarray, ...]:
    """Pairs (i, j) of a run of ``fwd`` and one of ``bwd`` on the same line with the same value that overlap,
    with the overlap [lo, hi); and the positions where such runs only touch end to end (diagonal contact).
    Runs of one list on one line do not overlap each other."""
    kf, kb = _line_keys(fwd, bwd, span)
    o = np.argsort(kb + bwd[1], kind="stable")
    b_start, b_stop = (kb + bwd[1])[o], (kb + bwd[2])[o]
    lo = np.searchsorted(b_stop, kf + fwd[1], side="right")
    hi = np.searchsorted(b_start, kf + fwd[2], side="left")
    count = np.maximum(hi - lo, 0)
    i = np.repeat(np.arange(len(count)), count)
    j = o[np.repeat(lo, count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)]
    touch = []
    for f_key, sorted_b in ((kf + fwd[2], b_start), (kf + fwd[1], b_stop)):
        pos = np.minimum(np.searchsorted(sorted_b, f_key), max(len(sorted_b) - 1, 0))
        hit = sorted_b[pos] == f_key if len(sorted_b) else np.zeros(len(f_key), bool)
        touch.append(np.flatnonzero(hit))
    touch_line = np.concatenate((fwd[0][touch[0]], fwd[0][touch[1]]))
    touch_pos = np.concatenate((fwd[2][touch[0]], fwd[1][touch[1]]))
    return i, j, np.maximum(fwd[1][i], bwd[1][j]), np.minimum(fwd[2][i], bwd[2][j]), touch_line, touch_pos


def _subtract(runs: Runs, which: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Runs:
    """``runs`` minus the intervals [lo, hi) of run ``which`` (disjoint per run)."""
    o = np.lexsort((lo, which))
    which, lo, hi = which[o], lo[o], hi[o]
    count = np.bincount(which, minlength=len(runs[0]))
    base = np.cumsum(count + 1) - (count + 1)  # each run becomes count + 1 gaps
    total = int((count + 1).sum())
    gap_lo, gap_hi = np.empty(total, np.int64), np.empty(total, np.int64)
    gap_lo[base], gap_hi[base + count] = runs[1], runs[2]
    ordinal = np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
    gap_lo[base[which] + ordinal + 1] = hi
    gap_hi[base[which] + ordinal] = lo
    src = np.repeat(np.arange(len(runs[0])), count + 1)
    keep = gap_lo < gap_hi
    src = src[keep]
    return (runs[0][src], gap_lo[keep], gap_hi[keep], *(r[src] for r in runs[3:]))


def _link_elements(
    start: np.ndarray, end: np.ndarray, first_dir: np.ndarray, last_dir: np.ndarray, value: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Link boundary pieces (corner keys ``start`` -> ``end``; first and last edge directions 0 E, 1 S,
    2 W, 3 N) into rings like ``_link`` does for runs: right turn first, then straight on, then left;
    rings touching themselves at a saddle are split. Returns ``_cycle_order``'s arrays."""
    m = len(start)
    keys = start * 4 + first_dir
    o = np.argsort(keys, kind="stable")
    sorted_keys = keys[o]

    def find(query: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(sorted_keys, query), m - 1)
        return np.where(sorted_keys[pos] == query, o[pos], -1)

    succ = np.full(m, -1, np.int64)
    for turn in (1, 0, 3):  # right, straight, left
        todo = succ < 0
        succ[todo] = find(end[todo] * 4 + (last_dir[todo] + turn) % 4)
    if (succ < 0).any() or len(np.unique(succ)) != m:
        raise OutputError("merge_seams: seam polygons do not close into rings")
    saddles: list[np.ndarray] = []
    for d in (0, 1):  # saddles: E and W (or S and N) pieces of one class start at the same corner
        x = np.flatnonzero(first_dir == d)
        y = find(start[x] * 4 + d + 2)
        ok = (y >= 0) & (value[np.maximum(y, 0)] == value[x])
        saddles.append(np.column_stack((x[ok], y[ok])))
    pairs = np.concatenate(saddles)
    pred = np.empty(m, np.int64)
    pred[succ] = np.arange(m)
    entering = pred[pairs]
    lab, off = _cycles(succ)
    for _ in range(64):
        same = lab[pairs[:, 0]] == lab[pairs[:, 1]]
        if not same.any():
            break
        p, q = entering[same, 0], entering[same, 1]
        succ[p], succ[q] = succ[q], succ[p].copy()
        _relabel(succ, lab, off, pairs[same, 0])
    else:
        raise OutputError("merge_seams: could not split self-touching rings")
    return _cycle_order(lab, off)


def _wrap(idx: np.ndarray, first: np.ndarray, length: np.ndarray) -> np.ndarray:
    """idx in [first, first + 2 * length) wrapped into the cycle [first, first + length)."""
    return np.where(idx >= first + length, idx - length, idx)


def _back(idx: np.ndarray, first: np.ndarray, length: np.ndarray) -> np.ndarray:
    """idx in [first - length, first + length) wrapped into the cycle [first, first + length)."""
    return np.where(idx < first, idx + length, idx)


def _pixel_rings(geoms: np.ndarray, inverse: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ring vertices of polygons in integer scene pixel coordinates (``inverse[i]``: the 6 coefficients of
    polygon i's CRS -> pixel transform), shells positive (clockwise on screen), holes negative; and the
    ragged offsets (ring_off, poly_off) of ``shapely.to_ragged_array``."""
    _, coords, (ring_off, poly_off) = shapely.to_ragged_array(geoms)
    a, b, c, d, e, f = np.repeat(inverse, np.diff(ring_off[poly_off]), axis=0).T
    px = a * coords[:, 0] + b * coords[:, 1] + c
    py = d * coords[:, 0] + e * coords[:, 1] + f
    x, y = np.rint(px), np.rint(py)
    if len(x) and max(np.abs(px - x).max(), np.abs(py - y).max()) > 1e-6:
        raise OutputError("merge_seams: seam polygons are not on their block's pixel grid")
    x, y = x.astype(np.int64), y.astype(np.int64)
    n_rings = len(ring_off) - 1
    vring = np.repeat(np.arange(n_rings), np.diff(ring_off))
    edge = np.ones(len(x), bool)
    edge[ring_off[1:] - 1] = False
    cross = (x * np.roll(y, -1) - np.roll(x, -1) * y)[edge]
    area = np.bincount(vring[edge], cross, minlength=n_rings)
    is_shell = np.zeros(n_rings, bool)
    is_shell[poly_off[:-1]] = True
    flip = np.flatnonzero(is_shell != (area > 0))
    if len(flip):  # reverse rings of the other orientation (e.g. from GDAL)
        idx = np.arange(len(x))
        sel = np.isin(vring, flip)
        idx[sel] = ring_off[vring[sel]] + ring_off[vring[sel] + 1] - 1 - idx[sel]
        x, y = x[idx], y[idx]
    return x, y, ring_off, poly_off


def _merged_polygons(
    vx: np.ndarray, vy: np.ndarray, ring_n: np.ndarray, ring_group: np.ndarray, transform: Affine
) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (through ``transform``) from rings given as consecutive vertices (ring r has ring_n[r]) and
    the group of each ring; each group must have one shell (positive area). Vertices in the middle of a
    straight line (where pieces met) are dropped. Returns the polygons and their groups."""
    rid = np.repeat(np.arange(len(ring_n)), ring_n)
    first = np.repeat(np.cumsum(ring_n) - ring_n, ring_n)
    k = np.arange(len(vx))
    pv, nv = _back(k - 1, first, ring_n[rid]), _wrap(k + 1, first, ring_n[rid])
    keep = ~(((vx[pv] == vx) & (vx == vx[nv])) | ((vy[pv] == vy) & (vy == vy[nv])))
    vx, vy, rid = vx[keep], vy[keep], rid[keep]
    ring_n = np.bincount(rid, minlength=len(ring_n))
    first = np.cumsum(ring_n) - ring_n
    k = np.arange(len(vx))
    nxt = _wrap(k + 1, first[rid], ring_n[rid])
    shell = np.bincount(rid, vx * vy[nxt] - vx[nxt] * vy, minlength=len(ring_n)) > 0
    groups = np.unique(ring_group)
    if not np.all(np.bincount(ring_group[shell], minlength=groups.max() + 1)[groups] == 1):
        raise OutputError("merge_seams: a merged region does not have exactly one outer ring")
    ro = np.lexsort((~shell, ring_group))  # rings grouped by polygon, shell first
    counts = ring_n[ro]
    new_first = np.cumsum(counts) - counts
    src = np.repeat(first[ro] - new_first, counts) + np.arange(counts.sum())
    ring_off = np.concatenate(([0], np.cumsum(counts + 1)))
    pos = np.repeat(ring_off[:-1] - new_first, counts) + np.arange(counts.sum())
    ox, oy = np.empty(ring_off[-1], np.float64), np.empty(ring_off[-1], np.float64)
    ox[pos], oy[pos] = vx[src], vy[src]
    ox[ring_off[1:] - 1], oy[ring_off[1:] - 1] = ox[ring_off[:-1]], oy[ring_off[:-1]]  # close the rings
    poly_off = np.concatenate((np.flatnonzero(shell[ro]), [len(ro)]))
    geoms = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, _apply(transform, ox, oy), (ring_off, poly_off)
    )
    return geoms, ring_group[ro][shell[ro]]


@dataclass
class _SeamPieces:
    """The seam polygons of all blocks, one entry per piece."""

    geoms: list[shapely.Geometry]
    values: list[int]
    inverse: np.ndarray  # (n, 6): each piece's block CRS -> scene pixel transform
    windows: np.ndarray  # (n, 4): each piece's block window (row, col, height, width)
    saddles: list[np.ndarray]  # per block: scene pixel corners where its seam polygons touch diagonally
    scene_transform: Affine
    complete: bool  # every block says where it is and where its seam polygons touch diagonally


def _gather(blocks: Iterable[BlockPolygons]) -> tuple[Polys, _SeamPieces | None]:
    """The blocks' interior polygons (final as they are), and their seam pieces (None: no seam polygon)."""
    result: Polys = []
    crs_geoms: list[shapely.Geometry] = []
    vals: list[int] = []
    inverse: list[tuple[float, ...]] = []
    windows: list[tuple[int, int, int, int]] = []
    saddles: list[np.ndarray] = []
    scene_t: Affine | None = None
    complete = True
    for block in blocks:
        result.extend(block.interior)
        if not block.seam:
            continue
        scene_t = scene_t or block.transform
        n = len(block.seam)
        crs_geoms.extend(g for g, _ in block.seam)
        vals.extend(v for _, v in block.seam)
        inverse.extend([tuple((~block.transform)[:6])] * n)
        windows.extend([block.window or (0, 0, 0, 0)] * n)
        complete = complete and block.window is not None and block.saddles is not None
        if block.saddles is not None:
            saddles.append(np.asarray(block.saddles, np.int64).reshape(-1, 2))
    if not crs_geoms or scene_t is None:
        return result, None
    pieces = _SeamPieces(
        crs_geoms, vals, np.asarray(inverse), np.asarray(windows, np.int64), saddles, scene_t, complete
    )
    return result, pieces


def _leftover_stubs(
    cut_edges: list[np.ndarray],
    cut_lo: list[np.ndarray],
    cut_hi: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    nx: np.ndarray,
    ny: np.ndarray,
    dy: np.ndarray,
    direction: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """What is left of the cancelled edges (parts no edge of the other side covered), as stubs: their source
    edge, direction and start/end points."""
    ce, clo, chi = np.concatenate(cut_edges), np.concatenate(cut_lo), np.concatenate(cut_hi)
    cuts = np.unique(ce)
    along_x = dy[cuts] == 0  # E/W: interval in x
    a = np.where(along_x, np.minimum(x[cuts], nx[cuts]), np.minimum(y[cuts], ny[cuts]))
    b = np.where(along_x, np.maximum(x[cuts], nx[cuts]), np.maximum(y[cuts], ny[cuts]))
    src, lo, hi = _subtract((cuts, a, b), np.searchsorted(cuts, ce), clo, chi)
    d = direction[src]
    s_pos = np.where((d == 0) | (d == 1), lo, hi)  # E, S run forwards; W, N backwards
    e_pos = np.where((d == 0) | (d == 1), hi, lo)
    horiz = (d == 0) | (d == 2)
    stub_sx, stub_sy = np.where(horiz, s_pos, x[src]), np.where(horiz, y[src], s_pos)
    stub_ex, stub_ey = np.where(horiz, e_pos, x[src]), np.where(horiz, y[src], e_pos)
    return src, d, stub_sx, stub_sy, stub_ex, stub_ey


def merge_seams(blocks: Iterable[BlockPolygons]) -> Polys:
    """All polygons of a scene: interior ones as they are, seam ones merged with their neighbours.

    Seam polygons are moved to integer scene-pixel coordinates (exact). Along the block edges, the boundary
    edges that same-class pieces share across a seam cancel out and the pieces that met form a group. The
    rest of each piece's rings is cut into chains at the cancelled edges and at the corners where two pieces
    of a group touch diagonally; chains and the uncancelled bits of seam edges are linked into rings as in
    tracing (parts that only share a corner stay apart, as with 4-connectivity).
    """
    result, seams = _gather(blocks)
    if seams is None:
        return result
    crs_geoms, vals, inverse, window = seams.geoms, seams.values, seams.inverse, seams.windows
    saddles, scene_t, complete = seams.saddles, seams.scene_transform, seams.complete
    values = np.asarray(vals, dtype=np.int64)

    # vertices and edges (edge k: vertex k -> k + 1 of the same ring; rings are closed)
    x, y, ring_off, poly_off = _pixel_rings(np.array(crs_geoms, dtype=object), inverse)
    n_rings = len(ring_off) - 1
    ring_piece = np.repeat(np.arange(len(crs_geoms)), np.diff(poly_off))
    ring_len = np.diff(ring_off) - 1  # edges (= vertices without the closing one) per ring
    vring = np.repeat(np.arange(n_rings), ring_len + 1)
    nx, ny = np.roll(x, -1), np.roll(y, -1)
    dx, dy = nx - x, ny - y
    edge = np.ones(len(x), bool)
    edge[ring_off[1:] - 1] = False
    if np.any(edge & ((dx != 0) == (dy != 0))):
        raise OutputError("merge_seams: seam polygon edges must be non-empty and along the pixel grid")
    direction = np.select([dx > 0, dy > 0, dx < 0], [0, 1, 2], 3)
    piece = ring_piece[vring]
    val = values[piece]

    # edges on the piece's block edges meet edges of neighbouring blocks
    if complete:
        r0, c0, bh, bw = (window[piece, i] for i in range(4))
        on_v = edge & (dx == 0) & ((x == c0) | (x == c0 + bw))
        on_h = edge & (dy == 0) & ((y == r0) | (y == r0 + bh))
        # per-vertex arrays are freed as soon as they are used up: the largest merges set the client's
        # peak memory (at 16384², 0.4 GB above its ≈ 270 MB otherwise)
        del r0, c0, bh, bw
    else:
        on_v, on_h = edge & (dx == 0), edge & (dy == 0)
    span = int(max(x.max(), y.max())) + 2
    pairs: list[np.ndarray] = []
    cut_edges: list[np.ndarray] = []
    cut_lo: list[np.ndarray] = []
    cut_hi: list[np.ndarray] = []
    breaks: list[np.ndarray] = []
    for on, fwd_dir, line, pos, npos in ((on_v, 1, x, y, ny), (on_h, 0, y, x, nx)):
        f = np.flatnonzero(on & (direction == fwd_dir))  # S (pixel left) / E (pixel below)
        b = np.flatnonzero(on & (direction == fwd_dir + 2))  # N (pixel right) / W (pixel above)
        fwd = (line[f], pos[f], npos[f], val[f])
        bwd = (line[b], npos[b], pos[b], val[b])
        i, j, lo, hi, t_line, t_pos = _overlaps(fwd, bwd, span)
        pairs.append(np.column_stack((piece[f[i]], piece[b[j]])))
        cut_edges.extend((f[i], b[j]))
        cut_lo.extend((lo, lo))
        cut_hi.extend((hi, hi))
        breaks.append(t_line * span + t_pos if fwd_dir == 0 else t_pos * span + t_line)
    del on_v, on_h
    group = _components(len(crs_geoms), np.concatenate(pairs))
    multi = np.bincount(group, minlength=len(crs_geoms))[group] > 1
    result.extend((crs_geoms[i], vals[i]) for i in np.flatnonzero(~multi).tolist())
    if not multi.any():
        return result

    # chains: maximal sequences of kept edges, cut at cancelled edges and at diagonal contacts
    key = y * span + x
    if complete:
        corners = np.concatenate(saddles) if saddles else np.zeros((0, 2), np.int64)
        breaks.append(corners[:, 1] * span + corners[:, 0])
    else:
        sel = multi[piece] & edge
        _, first_idx, counts = np.unique(
            key[sel] * len(values) + val[sel], return_index=True, return_counts=True
        )
        breaks.append(key[sel][first_idx[counts > 1]])
    cut = np.zeros(len(x), bool)
    cut[np.concatenate(cut_edges)] = True
    in_multi = multi[piece] & edge
    kept = in_multi & ~cut
    rfirst = ring_off[vring]  # first vertex (= first edge) of each vertex's ring
    rlen = ring_len[vring]
    prev = _back(np.arange(len(x)) - 1, rfirst, rlen)
    starts = kept & (cut[prev] | np.isin(key, np.concatenate(breaks)))
    del prev, in_multi
    closed_rings = np.unique(vring[kept])
    closed_rings = closed_rings[np.bincount(vring[starts], minlength=n_rings)[closed_rings] == 0]
    closed_rings = closed_rings[np.bincount(vring[cut], minlength=n_rings)[closed_rings] == 0]
    mark = np.where(starts, 2 * np.arange(len(x)) + 1, 2 * rfirst)
    last_start = np.maximum.accumulate(mark)
    ring_last_start = last_start[ring_off[1:] - 2]  # at each ring's last edge
    owner = np.where(last_start % 2 == 1, last_start // 2, ring_last_start[vring] // 2)
    del mark, last_start
    chain_start = np.flatnonzero(starts)
    n_edges = np.bincount(owner[kept], minlength=len(x))[chain_start]
    last_edge = _wrap(chain_start + n_edges - 1, rfirst[chain_start], rlen[chain_start])
    chain_end = _wrap(last_edge + 1, rfirst[chain_start], rlen[chain_start])

    # leftovers of cancelled edges
    src, d, stub_sx, stub_sy, stub_ex, stub_ey = _leftover_stubs(
        cut_edges, cut_lo, cut_hi, x, y, nx, ny, dy, direction
    )

    # link chains and stubs into rings
    n_c = len(chain_start)
    el_start = np.concatenate((key[chain_start], stub_sy * span + stub_sx))
    el_end = np.concatenate((key[chain_end], stub_ey * span + stub_ex))
    el_first = np.concatenate((direction[chain_start], d))
    el_last = np.concatenate((direction[last_edge], d))
    el_val = np.concatenate((val[chain_start], val[src]))
    el_group = np.concatenate((group[piece[chain_start]], group[piece[src]]))
    order, r_first, _r_len, _ = _link_elements(el_start, el_end, el_first, el_last, el_val)

    # ring vertices: each element contributes all its vertices but the last (the next one's first)
    contrib = np.concatenate((n_edges, np.ones(len(src), np.int64)))[order]
    total = int(contrib.sum())
    el = np.repeat(order, contrib)
    j = np.arange(total) - np.repeat(np.cumsum(contrib) - contrib, contrib)
    is_chain = el < n_c
    cs = chain_start[np.where(is_chain, el, 0)]
    vi = _wrap(cs + j, rfirst[cs], rlen[cs])
    sx = np.concatenate((np.zeros(n_c, np.int64), stub_sx))
    sy = np.concatenate((np.zeros(n_c, np.int64), stub_sy))
    vx, vy = np.where(is_chain, x[vi], sx[el]), np.where(is_chain, y[vi], sy[el])
    ring_n = np.add.reduceat(contrib, r_first) if len(r_first) else np.zeros(0, np.int64)
    ring_group = el_group[order[r_first]]
    # closed rings of grouped pieces that no cut touched (holes) come along unchanged
    cl_len = ring_len[closed_rings]
    cl_idx = np.repeat(ring_off[closed_rings] - np.cumsum(cl_len) + cl_len, cl_len) + np.arange(cl_len.sum())
    vx, vy = np.concatenate((vx, x[cl_idx])), np.concatenate((vy, y[cl_idx]))
    ring_n = np.concatenate((ring_n, cl_len))
    ring_group = np.concatenate((ring_group, group[ring_piece[closed_rings]]))
    del x, y, nx, ny, dx, dy, edge, vring, direction, piece, val, key, cut, kept, rfirst, rlen, starts, owner
    del el, j, is_chain, cs, vi
    geoms, group_of = _merged_polygons(vx, vy, ring_n, ring_group, scene_t)
    result.extend(zip(geoms.tolist(), values[group_of].tolist(), strict=True))
    return result


# A merge waits until the ready seam polygons have this many times the carried ones' vertices, so all merges
# together handle at most (1 + 1/MERGE_GROWTH) x the scene's seam vertices. Measured at 16384² (bundled
# model, 2 cores): 1 -> 2 cut the client's vectorizing and merging 27.1 -> 25.4 s, same polygons.
MERGE_GROWTH = 2


class SeamMerger:
    """Merges seam polygons as block rows complete, so a run holds only the polygons that reach the lowest
    complete row (and the blocks of rows still open), not every seam polygon of the scene.

    Blocks arrive in any order. Once the rows above scene row ``frontier`` are all in, their seam polygons
    are merged; merged polygons that do not reach the frontier are final. Those that do are carried as
    the seam polygons of one block spanning rows [0, frontier) - the merge result of a sub-raster is the
    whole-raster vectorization of that sub-raster - and merged again with the rows below. A merge waits
    until the new seam polygons have ``MERGE_GROWTH`` times as many vertices as the carried ones, so a
    polygon spanning the scene is re-merged a bounded number of times per vertex.
    """

    def __init__(self, scene_height: int, scene_width: int) -> None:
        self.height, self.width = scene_height, scene_width
        self.frontier = 0  # scene rows above this are complete
        self._row_width: dict[int, int] = {}  # block row offset -> width of its blocks so far
        self._row_height: dict[int, int] = {}
        self._waiting: dict[int, list[BlockPolygons]] = {}  # seam polygons of incomplete rows
        self._ready: list[BlockPolygons] = []  # of complete rows, not merged yet
        self._ready_vertices = 0
        self._carry: BlockPolygons | None = None
        self._carry_vertices = 0
        self.merge_s = 0.0  # seconds spent merging so far

    def add(self, block: BlockPolygons) -> Polys:
        """A block's polygons (only its ``seam`` ones are used); returns the polygons now final."""
        if block.window is None:
            raise ValueError("SeamMerger needs each block's window")
        r0, _, bh, bw = block.window
        if self._row_height.setdefault(r0, bh) != bh:
            raise ValueError(f"SeamMerger: blocks of row {r0} differ in height")
        self._row_width[r0] = self._row_width.get(r0, 0) + bw
        if block.seam:
            self._waiting.setdefault(r0, []).append(replace(block, interior=[]))
        while self._row_width.get(self.frontier) == self.width:
            row = self.frontier
            self.frontier += self._row_height.pop(row)
            del self._row_width[row]
            for b in self._waiting.pop(row, []):
                self._ready.append(b)
                self._ready_vertices += _n_vertices(b.seam)
        if self._ready and self._ready_vertices >= MERGE_GROWTH * self._carry_vertices:
            return self._merge()
        return []

    def held(self) -> int:
        """Seam polygons held now (carried, or waiting for their row or the next merge)."""
        waiting = self._ready + [b for row in self._waiting.values() for b in row]
        return sum(len(b.seam) for b in waiting) + (len(self._carry.seam) if self._carry else 0)

    def finish(self) -> Polys:
        """The remaining polygons (every block must have been added)."""
        if self._row_width:
            raise ValueError(f"SeamMerger: blocks missing in rows {sorted(self._row_width)}")
        return self._merge()

    def _merge(self) -> Polys:
        t0 = time.perf_counter()
        try:
            return self._merge_ready()
        finally:
            self.merge_s += time.perf_counter() - t0

    def _merge_ready(self) -> Polys:
        blocks = ([self._carry] if self._carry is not None else []) + self._ready
        merged = merge_seams(blocks)
        self._ready, self._ready_vertices = [], 0
        self._carry, self._carry_vertices = None, 0
        if self.frontier >= self.height or not merged:
            return merged
        scene_t = blocks[0].transform
        geoms = np.array([g for g, _ in merged], dtype=object)
        open_ = _max_pixel_row(geoms, ~scene_t) > self.frontier - 0.5  # reach the frontier (or may)
        carried = [merged[i] for i in np.flatnonzero(open_).tolist()]
        if carried:
            saddles = _diagonal_contacts(geoms[open_], [v for _, v in carried], ~scene_t)
            self._carry = BlockPolygons([], carried, scene_t, (0, 0, self.frontier, self.width), saddles)
            self._carry_vertices = _n_vertices(carried)
        return [merged[i] for i in np.flatnonzero(~open_).tolist()]


def _n_vertices(polys: Polys) -> int:
    return int(shapely.get_num_coordinates(np.array([g for g, _ in polys], dtype=object)).sum())


def _max_pixel_row(geoms: np.ndarray, inverse: Affine) -> np.ndarray:
    """Largest pixel row of each geometry's CRS bounding box (exact for north-up grids, an upper bound
    otherwise)."""
    x0, y0, x1, y1 = shapely.bounds(geoms).T
    rows = [inverse.d * x + inverse.e * y + inverse.f for x in (x0, x1) for y in (y0, y1)]
    return np.max(rows, axis=0)


def _diagonal_contacts(geoms: np.ndarray, values: list[int], inverse: Affine) -> np.ndarray:
    """Scene pixel corners (x, y) where rings of two different polygons of one class meet (they can only
    touch diagonally there: polygons of one class sharing an edge would be one polygon)."""
    n_rings = shapely.get_num_interior_rings(geoms) + 1
    x, y, ring_off, _poly_off = _pixel_rings(geoms, np.repeat([tuple(inverse[:6])], len(geoms), axis=0))
    vring = np.repeat(np.arange(len(ring_off) - 1), np.diff(ring_off))
    poly = np.repeat(np.arange(len(geoms)), n_rings)[vring]
    edge = np.ones(len(x), bool)
    edge[ring_off[1:] - 1] = False  # each ring's closing vertex repeats its first
    span = int(max(x.max(), y.max())) + 2
    corner = (y * span + x)[edge].astype(np.int64)
    vpoly = poly[edge]
    n = len(geoms)
    vals = np.asarray(values, np.int64)
    cls = np.unique(vals, return_inverse=True)[1].ravel()  # each polygon's class as 0 .. n_cls-1
    n_cls = int(cls.max()) + 1
    if span * span * max(n, n_cls) < 2**62:  # 1-D keys: far faster than unique rows
        at, p = np.divmod(np.unique(corner * n + vpoly), n)  # (corner, polygon) once each
        key, count = np.unique(at * n_cls + cls[p], return_counts=True)
        shared = key[count > 1] // n_cls
    else:
        seen = np.unique(np.column_stack((corner, vals[vpoly], vpoly)), axis=0)  # (corner, class, polygon)
        rows, count = np.unique(seen[:, :2], axis=0, return_counts=True)
        shared = rows[count > 1, 0]
    return np.column_stack((shared % span, shared // span))
