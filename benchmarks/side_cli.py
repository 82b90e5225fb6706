"""The command line and JSON report shared by the whole-scene scripts (naive.py and the peers).

python SCRIPT SCENE OUT.tif --model CKPT --tile 512 --overlap 64 --batch 8 [--torch-threads N] [--json T.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
from collections.abc import Callable
from pathlib import Path


def malloc_env() -> dict[str, str]:
    """The glibc ``MALLOC_*`` settings this process started with."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")}


def startup_s() -> float:
    """Seconds since this process started (interpreter start-up and imports, when called first)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")


def load_eager_model(path: Path):
    """The checkpoint's model in eval mode (plain NCHW float32), its normalisation as (1, C, 1, 1) tensors
    and its class ids (uint8): what a hand-written loop starts from."""
    import numpy as np
    import torch

    from geoseg.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    norm = ckpt.meta.normalization
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    return ckpt.model.eval(), mean, std, np.array([c.id for c in ckpt.meta.classes], np.uint8)


def write_labels(out: Path, labels, crs, transform, nodata: int) -> None:
    """The class raster as a plain tiled, deflate-compressed GeoTIFF (what such scripts write)."""
    import rasterio

    h, w = labels.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 1,
        "dtype": labels.dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(labels, 1)


def run_side(side: str, doc: str, segment: Callable[..., dict], argv: list[str] | None = None) -> dict:
    """Parse the shared options, run ``segment(scene, out, model, tile, overlap, batch)``, print the report
    (and write it with ``--json``): its timings plus tiles/s, start-up seconds, threads, MALLOC_* and
    peak RSS."""
    import torch

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        "side": side,
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
    return result
