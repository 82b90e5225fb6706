"""The model-only ceiling: tiles/s of ``Predictor.predict`` on a pre-built in-memory batch of real tiles.

Reads ``batch`` tiles spread over the scene's TileGrid once, runs ``warmup`` untimed batches, then
times ``batches`` forward passes of the same batch (normalise, pad, forward, softmax, float16).

    python benchmarks/model_only.py --model CKPT --scene SCENE --tile 512 --batch 8 [--batches 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import rasterio
import torch
from rasterio.windows import Window as RioWindow

from geoseg.inference.engines import TorchEngine
from geoseg.inference.openvino import OpenVinoPredictor, predictor_for
from geoseg.inference.predictor import Predictor
from geoseg.models.checkpoint import load_checkpoint
from tiles import TileGrid


def read_tiles(scene: Path, tile: int, overlap: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` tiles evenly spread over the scene's TileGrid: data (n, C, h, w) uint8 and valid (n, h, w)."""
    with rasterio.open(scene) as src:
        grid = TileGrid(src.height, src.width, tile, overlap)
        picks = np.linspace(0, len(grid) - 1, n).round().astype(int)
        data, valid = [], []
        for i in picks:
            w = grid[int(i)]
            win = RioWindow(w.col_off, w.row_off, w.width, w.height)
            data.append(src.read(window=win))
            valid.append(np.all(src.read_masks(window=win) > 0, axis=0))
    return np.stack(data), np.stack(valid)


PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_predictor(
    model: Path,
    engine: str = "torch",
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = True,
) -> Predictor | OpenVinoPredictor:
    """geoseg's predictor: for the torch engine with the given autocast precision and memory layout; for
    ``auto``/``openvino`` on the CPU the torch-free OpenVINO predictor that workers run."""
    dev = torch.device(device)
    checkpoint = load_checkpoint(model, device=dev)
    if engine != "torch":
        predictor = Predictor(checkpoint, dev, engine=engine)  # type: ignore[arg-type]  (converts once)
        # what CPU workers run once the conversion is cached: the torch-free OpenVINO predictor
        converted = predictor_for(str(model), device, torch.get_num_threads(), engine)
        return predictor if converted is None else converted
    assert checkpoint.model is not None
    return Predictor(
        checkpoint, dev, engine=TorchEngine(checkpoint.model, dev, PRECISIONS[precision], channels_last)
    )


def time_batches(
    predictor: Predictor | OpenVinoPredictor, x: np.ndarray, v: np.ndarray, batches: int, warmup: int
) -> dict:
    """Time ``batches`` calls of ``predictor.predict`` (probabilities back in host memory)."""
    for _ in range(warmup):
        predictor.predict(x, v)
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        predictor.predict(x, v)
        times.append(time.perf_counter() - t0)
    return {
        "tiles_per_s": len(x) * batches / sum(times),
        "batch_s": times,
        "median_batch_s": statistics.median(times),
        "batch": len(x),
        "batches": batches,
        "warmup": warmup,
        "tile_shape": list(x.shape[-2:]),
        "engine": predictor.engine.name,
        "device": str(getattr(predictor, "device", "cpu")),
    }


def measure(
    model: Path,
    scene: Path,
    tile: int,
    overlap: int,
    batch: int,
    batches: int,
    warmup: int,
    engine: str = "torch",
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = True,
) -> dict[str, object]:
    """Time ``batches`` forward passes after ``warmup`` untimed ones."""
    predictor = make_predictor(model, engine, device, precision, channels_last)
    x, v = read_tiles(scene, tile, overlap, batch)
    result = time_batches(predictor, x, v, batches, warmup)
    if engine == "torch":
        result |= {"precision": precision, "channels_last": channels_last}
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="geoseg checkpoint (.pt)")
    ap.add_argument("--scene", type=Path, required=True, help="scene to take real tiles from")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=5, help="timed batches")
    ap.add_argument("--warmup", type=int, default=1, help="untimed batches first")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch threads (default: torch's own)")
    ap.add_argument("--engine", default="torch", help="torch (the reference), onnx, openvino or auto")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="torch autocast dtype")
    ap.add_argument("--contiguous", action="store_true", help="torch: NCHW instead of channels_last")
    ap.add_argument("--json", type=Path, default=None, help="write the result here as JSON")
    args = ap.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    result = measure(
        args.model,
        args.scene,
        args.tile,
        args.overlap,
        args.batch,
        args.batches,
        args.warmup,
        args.engine,
        args.device,
        args.precision,
        not args.contiguous,
    )
    result |= {
        "side": "model_only",
        "torch_threads": torch.get_num_threads(),
        "malloc_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")},
    }
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
