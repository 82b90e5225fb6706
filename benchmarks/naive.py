"""The naive baseline: what an analyst writes by hand to segment a scene with a checkpoint.

Reads the whole scene into memory, predicts tile batches in a plain loop, averages overlapping
tile probabilities in a full-scene float32 array, takes the argmax and writes a tiled GeoTIFF.
It uses geoseg's ``Predictor`` (same model, normalisation and padding as the pipeline) so that the
comparison measures everything around the model, not a different forward pass.

    python benchmarks/naive.py SCENE OUT.tif --model CKPT --tile 512 --overlap 64 --batch 8 [--json T.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import rasterio
import torch

from benchmarks.side_cli import run_side, write_labels
from geoseg.inference.predictor import Predictor
from geoseg.models.checkpoint import load_checkpoint
from tiles import TileGrid

NODATA = 0


def segment(
    scene: Path, out: Path, model: Path, tile: int, overlap: int, batch: int
) -> dict[str, float | int]:
    """Segment ``scene`` into ``out``; returns stage timings in seconds and the tile count."""
    t0 = time.perf_counter()
    predictor = Predictor(load_checkpoint(model), torch.device("cpu"))
    class_ids = np.array([c.id for c in predictor.meta.classes], np.uint8)
    t_load = time.perf_counter()

    with rasterio.open(scene) as src:
        image = src.read()  # the whole scene: (C, H, W)
        valid = src.dataset_mask() > 0
        crs, transform = src.crs, src.transform
    _, h, w = image.shape
    t_read = time.perf_counter()

    grid = TileGrid(h, w, tile, overlap)
    windows = grid.windows()
    probs = np.zeros((len(class_ids), h, w), np.float32)
    counts = np.zeros((h, w), np.uint16)
    predict_s = stitch_s = 0.0
    for i in range(0, len(windows), batch):
        group = windows[i : i + batch]
        ta = time.perf_counter()
        x = np.stack([image[:, r, c] for r, c in (win.slices() for win in group)])
        v = np.stack([valid[r, c] for r, c in (win.slices() for win in group)])
        p = predictor.predict(x, v)
        tb = time.perf_counter()
        for win, pt in zip(group, p, strict=True):
            r, c = win.slices()
            probs[:, r, c] += pt
            counts[r, c] += 1
        predict_s += tb - ta
        stitch_s += time.perf_counter() - tb

    tc = time.perf_counter()
    probs /= np.maximum(counts, 1)
    labels = class_ids[probs.argmax(0)]
    labels[~valid] = NODATA
    del probs
    stitch_s += time.perf_counter() - tc

    tw = time.perf_counter()
    write_labels(out, labels, crs, transform, NODATA)
    t_end = time.perf_counter()
    return {
        "load_s": t_load - t0,
        "read_s": t_read - t_load,
        "predict_s": predict_s,
        "stitch_s": stitch_s,
        "write_s": t_end - tw,
        "total_s": t_end - t0,
        "tiles": len(grid),
    }


def main(argv: list[str] | None = None) -> None:
    run_side("naive", __doc__, segment, argv)


if __name__ == "__main__":
    main()
