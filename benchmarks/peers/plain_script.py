"""Peer: the tiled inference script an analyst writes by hand with plain PyTorch and rasterio.

Loads the geoseg checkpoint's model, reads the whole scene, runs batches of ``TileGrid`` windows
through it (``eval()``, ``torch.no_grad()``, NCHW float32, no other tuning), averages the softmax
probabilities of overlapping tiles in a full-scene float32 array, takes the argmax and writes a tiled
deflate GeoTIFF. Unlike ``benchmarks/naive.py`` it does not use geoseg's ``Predictor``: the
normalisation ``(x - mean) / std`` from the checkpoint and the forward pass are written out here.

    python benchmarks/peers/plain_script.py SCENE OUT.tif --model CKPT --tile 512 --overlap 64 --batch 8 \\
        --torch-threads N [--json T.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import rasterio
import segmentation_models_pytorch  # noqa: F401  (imported up front: load_s is the checkpoint alone)
import torch

from benchmarks.side_cli import load_eager_model, run_side, write_labels
from tiles import TileGrid

NODATA = 0


def segment(
    scene: Path, out: Path, model_path: Path, tile: int, overlap: int, batch: int
) -> dict[str, float | int]:
    """Segment ``scene`` into ``out``; returns stage timings in seconds and the tile count."""
    t0 = time.perf_counter()
    model, mean, std, class_ids = load_eager_model(model_path)
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
        x = torch.from_numpy(np.stack([image[(slice(None), *win.slices())] for win in group])).float()
        x = (x - mean) / std
        with torch.no_grad():
            p = torch.softmax(model(x), dim=1).numpy()
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
    run_side("plain_script", __doc__, segment, argv)


if __name__ == "__main__":
    main()
