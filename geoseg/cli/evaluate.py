"""``geoseg evaluate``: score a model or baseline against labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    Batch,
    ClassField,
    Device,
    PrecisionOpt,
    Resample,
    fail,
    reported,
    split,
)
from geoseg.inference.precision import PRECISIONS


def _parse_bounds(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        b = tuple(float(v) for v in value.split(","))
    except ValueError:
        b = ()
    if len(b) != 4 or b[0] >= b[2] or b[1] >= b[3]:
        fail(f"--bounds must be xmin,ymin,xmax,ymax in the image CRS, got {value!r}")
    return b[0], b[1], b[2], b[3]


def _parse_groups(values: list[str] | None) -> dict[str, list[str]] | None:
    if not values:
        return None
    groups: dict[str, list[str]] = {}
    for v in values:
        name, _, members = v.partition("=")
        if not name.strip() or not members.strip():
            fail(f"--group must be NAME=class,class, got {v!r}")
        groups[name.strip()] = split([members])
    return groups


def evaluate(
    model: Annotated[str, typer.Option(help="checkpoint (.pt) or baseline:landcover / baseline:buildings")],
    images: Annotated[list[Path] | None, typer.Option(help="GeoTIFF(s) to score, repeatable")] = None,
    labels: Annotated[
        list[Path] | None, typer.Option(help="label polygons or rasters, per image or one")
    ] = None,
    class_field: ClassField = None,
    bounds: Annotated[str | None, typer.Option(help="score only xmin,ymin,xmax,ymax (image CRS)")] = None,
    chips: Annotated[Path | None, typer.Option(help="image/mask chip folder instead of GeoTIFFs")] = None,
    colors: Annotated[Path | None, typer.Option(help="colour table of the --chips masks")] = None,
    subfolder: Annotated[str | None, typer.Option(help="only chips under this sub-folder name")] = None,
    label_classes: Annotated[
        str | None, typer.Option(help="the labels' class names in id order, where they are not the model's")
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(help="score merged classes, repeatable: NAME=class,class (model and label classes)"),
    ] = None,
    band_names: Annotated[
        str | None, typer.Option(help="role of each band of the images, e.g. red,green,blue,nir")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the scores as JSON")] = None,
    batch: Batch = 8,
    resample: Resample = True,
    device: Device = "auto",
    precision: PrecisionOpt = None,
) -> None:
    """Score a model (or a classical baseline) against labels: IoU, F1, precision, recall, object F1."""
    from geoseg.evaluation.evaluate import Segmenter, evaluate_chips, evaluate_scenes
    from geoseg.io.labels import pair_labels
    from geoseg.run.preflight import check_device

    images, labels = images or [], labels or []
    if bool(images) == bool(chips):
        fail("give either --images with --labels, or --chips with --colors")
    if images and len(labels) not in (1, len(images)):
        fail(f"{len(images)} image(s) need 1 or {len(images)} --labels")
    if chips and colors is None:
        fail("--chips needs --colors")
    box = _parse_bounds(bounds)
    if precision is not None and precision not in PRECISIONS:
        fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    groups = _parse_groups(group)
    notify = lambda m: typer.echo(m, err=True)  # noqa: E731
    with reported(out):
        check_device(device)  # before any model is loaded
        seg = Segmenter(
            model,
            device=device,
            batch=batch,
            resample=resample,
            band_names=split([band_names]) if band_names else None,
            precision=precision,
        )
        if chips is not None and colors is not None:  # both, or neither (checked above)
            report = evaluate_chips(seg, chips, colors, subfolder, notify=notify)
        else:
            pairs = pair_labels(images, labels)
            report = evaluate_scenes(
                seg,
                pairs,
                class_field,
                box,
                notify=notify,
                label_classes=split([label_classes or ""]) or None,
                groups=groups,
            )
    typer.echo(report.table())
    if out is not None:
        report.write(out)
        typer.echo(f"scores written to {out}")
