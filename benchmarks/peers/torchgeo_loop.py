"""Peer: torchgeo's inference loop (``RasterDataset`` + ``GridGeoSampler`` + ``DataLoader``).

torchgeo has no official inference tutorial yet (torchgeo issue #1991); its maintainers point to loops
like fieldsoftheworld/ftw-baselines' ``inference.py`` (torchgeo PR #560): a ``RasterDataset`` on the
scene (all bands, ``is_image=True``), ``GridGeoSampler(size=tile, stride=tile - overlap)`` in pixels,
``DataLoader(batch_size, sampler, collate_fn=stack_samples, num_workers=0)``, the model in eval mode
(``torch.no_grad()``, NCHW float32), and each chip's prediction written into a full-scene array at the
pixel window of its sample bounds. Here the normalisation is geoseg's ``(x - mean) / std``, applied to
the batch in the loop, and, unlike that loop (argmax per chip, chip borders cropped), the softmax
probabilities of overlapping chips are averaged as in ``plain_script.py``; then argmax → class ids →
tiled deflate GeoTIFF.

Differences from geoseg's tiling: torchgeo 0.8's ``GridGeoSampler`` starts at the scene's bottom-left
corner and its last row/column of chips runs past the top/right edge (the dataset pads it with
nodata), where ``TileGrid`` shifts the last tile inside the scene; the number of chips is the same.
Each chip is read by ``rasterio.merge`` through a ``WarpedVRT`` of the file (torchgeo's own default
transform for the scene differs from the file's by rounding; the pixels come out identical). Nodata
pixels are not masked in the output (the loop never sees the scene's mask).

    python benchmarks/peers/torchgeo_loop.py SCENE OUT.tif --model CKPT --tile 512 --overlap 64 --batch 8 \\
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
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import GridGeoSampler, Units

from benchmarks.side_cli import load_eager_model, run_side, write_labels
from tiles import TileGrid


class Scene(RasterDataset):
    """One GeoTIFF scene, all of its bands, as model input."""

    filename_glob = "*.tif"
    is_image = True


def segment(
    scene: Path, out: Path, model_path: Path, tile: int, overlap: int, batch: int
) -> dict[str, float | int]:
    """Segment ``scene`` into ``out``; returns stage timings in seconds and the tile count."""
    t0 = time.perf_counter()
    model, mean, std, class_ids = load_eager_model(model_path)
    t_load = time.perf_counter()

    dataset = Scene(paths=[str(scene)])
    sampler = GridGeoSampler(dataset, size=tile, stride=tile - overlap, units=Units.PIXELS)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, collate_fn=stack_samples, num_workers=0)
    with rasterio.open(scene) as src:
        h, w = src.height, src.width
        crs, transform = src.crs, src.transform
    t_dataset = time.perf_counter()

    probs = np.zeros((len(class_ids), h, w), np.float32)
    counts = np.zeros((h, w), np.uint16)
    data_s = predict_s = stitch_s = 0.0
    chips = 0
    t_prev = time.perf_counter()
    for sample in loader:
        ta = time.perf_counter()
        data_s += ta - t_prev
        x = (sample["image"] - mean) / std
        with torch.no_grad():
            p = torch.softmax(model(x), dim=1).numpy()
        tb = time.perf_counter()
        for (xs, ys, _), pt in zip(sample["bounds"], p, strict=True):
            col, row = ~transform * (xs.start, ys.stop)  # the chip's top-left corner in pixels
            r0, c0 = round(row), round(col)
            r, c = slice(max(r0, 0), min(r0 + pt.shape[1], h)), slice(max(c0, 0), min(c0 + pt.shape[2], w))
            probs[:, r, c] += pt[:, r.start - r0 : r.stop - r0, c.start - c0 : c.stop - c0]
            counts[r, c] += 1
        chips += len(p)
        predict_s += tb - ta
        t_prev = time.perf_counter()
        stitch_s += t_prev - tb

    tc = time.perf_counter()
    probs /= np.maximum(counts, 1)
    labels = class_ids[probs.argmax(0)]
    del probs
    stitch_s += time.perf_counter() - tc

    tw = time.perf_counter()
    write_labels(out, labels, crs, transform, 0)
    t_end = time.perf_counter()
    return {
        "load_s": t_load - t0,
        "dataset_s": t_dataset - t_load,
        "data_s": data_s,
        "predict_s": predict_s,
        "stitch_s": stitch_s,
        "write_s": t_end - tw,
        "total_s": t_end - t0,
        "tiles": len(TileGrid(h, w, tile, overlap)),
        "chips": chips,
    }


def main(argv: list[str] | None = None) -> None:
    run_side("torchgeo_loop", __doc__, segment, argv)


if __name__ == "__main__":
    main()
