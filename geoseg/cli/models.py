"""``geoseg models``: architectures, baselines and bundled checkpoints."""

from __future__ import annotations

import typer

from geoseg.config import (
    DEFAULT_LANDCOVER_MODEL,
)


def models() -> None:
    """List the architectures geoseg can build and the bundled checkpoints."""
    from geoseg.models.checkpoint import read_checkpoint_meta
    from geoseg.models.registry import ARCHITECTURES

    typer.echo("architectures: " + ", ".join(sorted(ARCHITECTURES)))
    from geoseg.inference.baseline import BASELINES

    for name, make in BASELINES.items():
        b = make()
        needs = " or ".join("+".join(n) for n in b.needs)
        classes = ", ".join(c.name for c in b.classes)
        typer.echo(
            f"{name}: {b.task} classical rules, bands {'/'.join(b.uses)} (needs {needs}) classes=[{classes}]"
        )
    ckpt_dir = DEFAULT_LANDCOVER_MODEL.parent
    for path in sorted(ckpt_dir.glob("*.pt")):
        meta, _ = read_checkpoint_meta(path)
        classes = ", ".join(c.name for c in meta.classes)
        key = "val_iou_building" if meta.task == "buildings" else "val_miou"
        score = meta.metrics.get(key)
        typer.echo(
            f"{path.name}: {meta.task} {meta.arch}/{meta.encoder} bands={'/'.join(meta.bands)} "
            f"{meta.input_dtype} gsd={meta.gsd_m} m classes=[{classes}]"
            + (f" {key}={score:.3f}" if score is not None else "")
        )
