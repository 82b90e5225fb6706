"""Peer: geoai's tiled GeoTIFF predictor for a trained segmentation-models-pytorch model.

``geoai.semantic_segmentation(input_path, output_path, model_path, architecture, encoder_name, ...)``
builds the smp model with ``get_smp_model(architecture, encoder_name, ...)``, loads a plain state_dict
``.pth`` into it and, for a GeoTIFF, calls ``geoai.train.semantic_inference_on_geotiff``. This script
does exactly those steps, except that ``get_smp_model`` also gets the checkpoint's ``arch_kwargs``
(geoseg's landcover model is a U-Net with ``encoder_depth=3`` and its own decoder channels, which
``semantic_segmentation`` has no way to pass on): the geoseg model's state_dict is saved to a temporary
``.pth``, rebuilt by geoai, and run by geoai's predictor with ``window_size=tile``, ``overlap``,
``batch_size``, ``device=cpu``, ``quiet=True``.

What geoai does differently (speed is what is compared; the class map differs):

- preprocessing is ``x / 255`` per window, not the checkpoint's ``(x - mean) / std``;
- its window loop visits the last row and column of windows twice (a 1024² scene with 512/64 runs 16
  windows where ``TileGrid`` has 9): ``model_tiles`` counts the tiles the model actually ran;
- each window is read from the file on its own, overlaps are blended with edge-distance weights;
- the output is written with the scene's ``meta`` (untiled, uncompressed, the scene's nodata) and holds
  the 0-based class index (class id - 1), not geoseg's class ids.

    python benchmarks/peers/geoai_predict.py SCENE OUT.tif --model CKPT --tile 512 --overlap 64 --batch 8 \\
        --torch-threads N [--json T.json]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import rasterio
import torch
from geoai.train import get_smp_model, semantic_inference_on_geotiff

from benchmarks.side_cli import run_side
from geoseg.models.checkpoint import load_checkpoint
from tiles import TileGrid


def segment(
    scene: Path, out: Path, model_path: Path, tile: int, overlap: int, batch: int
) -> dict[str, float | int]:
    """Segment ``scene`` into ``out``; returns stage timings in seconds and the tile count."""
    t0 = time.perf_counter()
    ckpt = load_checkpoint(model_path)
    meta = ckpt.meta
    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / "model.pth"
        torch.save(ckpt.model.state_dict(), pth)
        del ckpt
        t_export = time.perf_counter()
        # What geoai.semantic_segmentation does before its GeoTIFF branch (plus the arch kwargs).
        model = get_smp_model(
            architecture=meta.arch,
            encoder_name=meta.encoder,
            encoder_weights=None,
            in_channels=meta.in_channels,
            classes=len(meta.classes),
            activation=None,
            **meta.arch_kwargs,
        )
        model.load_state_dict(torch.load(pth, map_location="cpu"))
        model.eval()
    t_load = time.perf_counter()

    forward: dict[str, Any] = {"s": 0.0, "tiles": 0, "t": 0.0}

    def before(module: torch.nn.Module, args: Any) -> None:
        forward["t"] = time.perf_counter()

    def after(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        forward["s"] += time.perf_counter() - forward["t"]
        forward["tiles"] += output.shape[0]

    model.register_forward_pre_hook(before)
    model.register_forward_hook(after)
    _, infer_s = semantic_inference_on_geotiff(
        model=model,
        geotiff_path=str(scene),
        output_path=str(out),
        window_size=tile,
        overlap=overlap,
        batch_size=batch,
        num_channels=meta.in_channels,
        num_classes=len(meta.classes),
        device=torch.device("cpu"),
        quiet=True,
    )
    t_end = time.perf_counter()
    with rasterio.open(scene) as src:
        h, w = src.height, src.width
    return {
        "load_s": t_load - t0,
        "export_pth_s": t_export - t0,
        "infer_s": infer_s,
        "predict_s": forward["s"],
        "write_s": t_end - t_load - infer_s,
        "total_s": t_end - t0,
        "tiles": len(TileGrid(h, w, tile, overlap)),
        "model_tiles": forward["tiles"],
    }


def main(argv: list[str] | None = None) -> None:
    run_side("geoai_predict", __doc__, segment, argv)


if __name__ == "__main__":
    main()
