"""``geoseg train``: train (or resume training) a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    ClassField,
    fail,
    reported,
    split,
)


def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder (config, metrics, checkpoints)")],
    task: Annotated[str, typer.Option(help="landcover or buildings")] = "landcover",
    images: Annotated[list[Path] | None, typer.Option(help="training GeoTIFF(s), repeatable")] = None,
    labels: Annotated[
        list[Path] | None,
        typer.Option(help="label polygons (GeoPackage/GeoJSON) or rasters, per image or one"),
    ] = None,
    val_images: Annotated[list[Path] | None, typer.Option(help="held-out validation GeoTIFF(s)")] = None,
    val_labels: Annotated[list[Path] | None, typer.Option(help="labels of --val-images")] = None,
    val_fraction: Annotated[
        float, typer.Option(help="without --val-images: trailing strip of each scene held out")
    ] = 0.2,
    chips: Annotated[
        Path | None, typer.Option(help="folder of images/ + masks/ chip pairs (no georef)")
    ] = None,
    colors: Annotated[Path | None, typer.Option(help="YAML colour-to-class table for --chips masks")] = None,
    val_chips: Annotated[str | None, typer.Option(help="chip sub-folder held out for validation")] = None,
    classes: Annotated[str | None, typer.Option(help="class names in id order, e.g. forest,water")] = None,
    class_field: ClassField = None,
    bands: Annotated[str | None, typer.Option(help="band names to record, e.g. red,green,blue,nir")] = None,
    arch: Annotated[str, typer.Option(help="architecture (geoseg models)")] = "unet",
    encoder: Annotated[str, typer.Option(help="smp encoder name")] = "mobilenet_v2",
    encoder_depth: Annotated[int | None, typer.Option(help="encoder stages (unets: 3)")] = None,
    encoder_weights: Annotated[Path | None, typer.Option(help="local encoder weight file (.pth)")] = None,
    epochs: Annotated[int, typer.Option(help="epochs")] = 10,
    steps_per_epoch: Annotated[int, typer.Option(help="optimizer steps per epoch")] = 50,
    batch: Annotated[int, typer.Option(help="windows per step")] = 8,
    size: Annotated[int, typer.Option(help="training window in pixels")] = 256,
    lr: Annotated[float, typer.Option(help="peak learning rate (warm-up, then cosine decay)")] = 2e-3,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    sampler: Annotated[str, typer.Option(help="random or grid windows")] = "random",
    gsd: Annotated[float | None, typer.Option(help="resample imagery to this GSD in metres")] = None,
    overlap: Annotated[int, typer.Option(help="tile overlap recorded for geoseg run")] = 128,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
) -> None:
    """Train a model; rerunning the same command resumes after the last finished epoch."""
    options = dict(locals())  # the flags, under TrainConfig's field names below
    options.pop("overwrite")
    options |= {
        "images": images or [],
        "labels": labels or [],
        "val_images": val_images or [],
        "val_labels": val_labels or [],
        "classes": split([classes]) if classes else None,
        "bands": split([bands]) if bands else None,
        "arch": arch.lower(),
        "gsd_m": options.pop("gsd"),
    }
    from geoseg.train.config import TrainConfig
    from geoseg.train.job import train_model

    with reported(out):
        cfg = TrainConfig(**options)
    try:
        with reported(out):
            result = train_model(cfg, overwrite=overwrite, notify=lambda m: typer.echo(m, err=True))
    except ValueError as exc:  # smp rejects an encoder/architecture combination
        fail(f"{cfg.arch}/{cfg.encoder}: {exc}")
    state = "already complete" if result.complete_before else "done"
    typer.echo(
        f"{result.run.root}: {state}; best {result.score_name} {result.best_score:.3f} "
        f"at epoch {result.best_epoch} -> {result.run.best}"
    )
