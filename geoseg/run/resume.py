"""Durable per-block progress of a run, so that a killed run resumes where it stopped.

Each finished output block's result (class labels, confidence, polygons, timings) is written to
``<staging folder>/.blocks/<index>.npz`` (a temporary file, ``fsync``, rename: a block file is complete or
absent after a crash or power loss) before the block goes into the outputs. A rerun of the same command
finds the same staging folder (named after the run's fingerprint), replays the saved blocks in index
order into fresh output files and computes only the others; the outputs are the same as those of an
uninterrupted run. Files are plain ``.npz`` arrays (geometries as WKB), read without pickle.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import shapely
from affine import Affine

from geoseg.errors import OutputError
from geoseg.inference.task import BatchStats
from geoseg.io.staging import durable_write_bytes
from geoseg.outputs.sink import BlockResult
from geoseg.outputs.vectorize import BlockPolygons

BLOCKS_DIR = ".blocks"
PLAN_FILE = "plan.json"


FORMAT = 2  # of the block files: every model's part of a block in one file


class BlockStore:
    """The saved blocks of one run (``key``: its fingerprint) in its staging folder; a block file holds
    the results of each of the run's models for that block."""

    def __init__(self, stage: Path, key: str, n_blocks: int) -> None:
        self.dir = stage / BLOCKS_DIR
        self.n_blocks = n_blocks
        plan = {"fingerprint": key, "blocks": n_blocks, "format": FORMAT}
        try:
            same = json.loads((self.dir / PLAN_FILE).read_text()) == plan
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            try:
                durable_write_bytes(self.dir / PLAN_FILE, json.dumps(plan).encode())
            except OSError as exc:
                raise OutputError(f"cannot write {self.dir / PLAN_FILE}: {exc.strerror}") from None

    def _path(self, index: int) -> Path:
        return self.dir / f"{index:07d}.npz"

    def done(self) -> list[int]:
        """Indexes of the blocks saved so far (files that do not open are dropped)."""
        found = []
        for p in self.dir.glob("*.npz"):
            if p.stem.isdigit() and int(p.stem) < self.n_blocks:
                try:
                    with np.load(p, allow_pickle=False) as z:
                        if "meta" in z.files:
                            found.append(int(p.stem))
                            continue
                except (OSError, ValueError, EOFError):
                    pass
                p.unlink(missing_ok=True)
        return sorted(found)

    def save(self, parts: tuple[BlockResult, ...]) -> None:
        """Save one block's results (one per model of the run) durably."""
        arrays: dict[str, np.ndarray] = {}
        meta = []
        for m, res in enumerate(parts):
            arrays |= {f"p{m}_{k}": v for k, v in _block_arrays(res).items()}
            meta.append(
                {
                    "index": res.index,
                    "stitch_s": res.stitch_s,
                    "vectorize_s": res.vectorize_s,
                    "batches": [asdict(b) for b in res.batches],
                }
            )
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        buf = io.BytesIO()
        # uncompressed: zlib took ~70 ms a block of the client's time
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub mixes **arrays with allow_pickle
        index = parts[0].index
        try:
            durable_write_bytes(self._path(index), buf.getvalue())
        except OSError as exc:
            raise OutputError(f"cannot save block {index} in {self.dir}: {exc.strerror}") from None

    def load(self, index: int) -> tuple[BlockResult, ...]:
        with np.load(self._path(index), allow_pickle=False) as z:
            metas = json.loads(z["meta"].tobytes())
            return tuple(_block_result({k: z[f"p{m}_{k}"] for k in _KEYS if f"p{m}_{k}" in z}, meta)
                         for m, meta in enumerate(metas))  # fmt: skip

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _rle(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length code of a class raster (row-major): where each run starts, and its value."""
    flat = labels.ravel()
    change = np.empty(flat.size, bool)
    change[:1] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    starts = np.flatnonzero(change).astype(np.int64 if flat.size >= 2**31 else np.int32)
    return starts, flat[starts]


def _unrle(starts: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    lengths = np.diff(np.append(starts.astype(np.int64), size))
    return np.repeat(values, lengths).reshape(shape)


_KEYS = (
    "label_starts", "label_values", "label_shape", "confidence", "transform", "window", "saddles",
    *(f"{name}_{part}" for name in ("interior", "seam") for part in ("wkb", "len", "val")),
)  # fmt: skip


def _block_arrays(res: BlockResult) -> dict[str, np.ndarray]:
    """One model's block result as plain arrays (geometries as WKB)."""
    polys = res.polygons
    arrays: dict[str, np.ndarray] = dict(zip(("label_starts", "label_values"), _rle(res.labels), strict=True))
    arrays["label_shape"] = np.array(res.labels.shape, np.int64)
    if res.confidence is not None:
        arrays["confidence"] = res.confidence
    for name in ("interior", "seam"):
        items = getattr(polys, name)
        wkb = shapely.to_wkb(np.array([g for g, _ in items] or [], dtype=object)) if items else []
        arrays[f"{name}_wkb"] = np.frombuffer(b"".join(wkb), np.uint8)
        arrays[f"{name}_len"] = np.array([len(b) for b in wkb], np.int64)
        arrays[f"{name}_val"] = np.array([v for _, v in items], np.int64)
    arrays["transform"] = np.array(tuple(polys.transform)[:6], np.float64)
    if polys.window is not None:
        arrays["window"] = np.array(polys.window, np.int64)
    if polys.saddles is not None:
        arrays["saddles"] = np.asarray(polys.saddles)
    return arrays


def _block_result(z: dict[str, np.ndarray], meta: dict) -> BlockResult:
    fields = {}
    for name in ("interior", "seam"):
        buf, lens, vals = z[f"{name}_wkb"].tobytes(), z[f"{name}_len"], z[f"{name}_val"]
        ends = np.cumsum(lens)
        wkb = [buf[e - n : e] for e, n in zip(ends.tolist(), lens.tolist(), strict=True)]
        geoms = shapely.from_wkb(np.array(wkb, dtype=object)).tolist() if wkb else []
        fields[name] = list(zip(geoms, vals.tolist(), strict=True))
    polys = BlockPolygons(
        fields["interior"],
        fields["seam"],
        Affine(*z["transform"].tolist()),
        tuple(z["window"].tolist()) if "window" in z else None,
        z["saddles"] if "saddles" in z else None,
    )
    return BlockResult(
        index=meta["index"],
        labels=_unrle(z["label_starts"], z["label_values"], tuple(z["label_shape"].tolist())),
        polygons=polys,
        stitch_s=meta["stitch_s"],
        vectorize_s=meta["vectorize_s"],
        confidence=z["confidence"] if "confidence" in z else None,
        batches=tuple(BatchStats(**b) for b in meta["batches"]),
    )
