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

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import rasterio
import segmentation_models_pytorch  # noqa: F401  (imported up front: load_s is the checkpoint alone)
import torch

from geoseg.models.checkpoint import load_checkpoint
from tiles import TileGrid

NODATA = 0


def malloc_env() -> dict[str, str]:
    """The glibc ``MALLOC_*`` settings this process started with."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")}


def startup_s() -> float:
    """Seconds since this process started (interpreter start-up and imports, when called first)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")


def segment(
    scene: Path, out: Path, model_path: Path, tile: int, overlap: int, batch: int
) -> dict[str, float | int]:
    """Segment ``scene`` into ``out``; returns stage timings in seconds and the tile count."""
    t0 = time.perf_counter()
    ckpt = load_checkpoint(model_path)
    model = ckpt.model.eval()
    mean = torch.tensor(ckpt.meta.normalization.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(ckpt.meta.normalization.std, dtype=torch.float32).view(1, -1, 1, 1)
    class_ids = np.array([c.id for c in ckpt.meta.classes], np.uint8)
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
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 1,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(labels, 1)
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scene", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", type=Path, required=True, help="geoseg checkpoint (.pt)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--torch-threads", type=int, default=0, help="torch threads (default: torch's own)")
    ap.add_argument("--json", type=Path, default=None, help="write timings here as JSON")
    args = ap.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    started_s = startup_s()
    result = segment(args.scene, args.out, args.model, args.tile, args.overlap, args.batch)
    result |= {
        "side": "plain_script",
        "tiles_per_s": result["tiles"] / result["total_s"],
        "startup_s": started_s,
        "torch_threads": torch.get_num_threads(),
        "malloc_env": malloc_env(),
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
