"""``geoseg change``: change between two dates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    OutFolder,
    OverwriteFolder,
    Resample,
    parse_bands,
    parse_class_map,
    reported,
)
from geoseg.config import ClusterConfig


def change(
    before: Annotated[Path, typer.Argument(help="run folder (or scene) of the earlier date")],
    after: Annotated[Path, typer.Argument(help="run folder (or scene) of the later date")],
    out: OutFolder,
    grid: Annotated[
        str, typer.Option(help="finer, before or after: the grid both dates are put on")
    ] = "finer",
    mmu: Annotated[
        float | None, typer.Option(help="minimum mapping unit of change regions in m² (default 100)")
    ] = None,
    min_confidence: Annotated[
        float | None, typer.Option(help="ignore change where either run's confidence is below this (0-1)")
    ] = None,
    before_mask: Annotated[Path | None, typer.Option(help="raster; nonzero = exclude (e.g. clouds)")] = None,
    after_mask: Annotated[Path | None, typer.Option(help="raster; nonzero = exclude (e.g. clouds)")] = None,
    class_map: Annotated[
        str | None,
        typer.Option(
            help="AFTER=BEFORE class names, e.g. 'grass=vegetation,trees=vegetation', for runs of "
            "different models or class schemes"
        ),
    ] = None,
    model: Annotated[Path | None, typer.Option(help="checkpoint for scenes given as BEFORE/AFTER")] = None,
    bands: Annotated[
        str | None, typer.Option(help="bands of scenes given as BEFORE/AFTER, e.g. 1,2,3")
    ] = None,
    resample: Resample = True,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler for the block tasks (default: a worker in this process)"),
    ] = None,
    overwrite: OverwriteFolder = False,
    progress: Annotated[bool, typer.Option(help="show progress")] = True,
) -> None:
    """Change between two dates: change.tif, change.gpkg, transitions.csv, change.json in OUT."""
    from geoseg.change import ChangeConfig, run_change

    with reported(out):
        cfg = ChangeConfig(
            before=before,
            after=after,
            out=out,
            grid=grid,
            min_confidence=min_confidence,
            before_mask=before_mask,
            after_mask=after_mask,
            class_map=parse_class_map(class_map),
            **({"cluster": ClusterConfig(scheduler=scheduler)} if scheduler else {}),
            model=model,
            bands=parse_bands(bands),
            resample=resample,
            overwrite=overwrite,
            progress=progress,
            **({} if mmu is None else {"mmu_m2": mmu}),
        )
    with reported(out):
        s = run_change(cfg, notify=lambda m: typer.echo(m, err=True))
    if not s.skipped:
        extra = "".join(
            f", {v} buildings {k}" for k, v in s.buildings.items() if k in ("new", "removed", "changed")
        )
        typer.echo(
            f"{s.out}: {s.changed_m2:,.0f} m² changed of {s.compared_m2:,.0f} m² compared "
            f"({s.regions} change regions{extra}) in {s.seconds:.1f} s"
        )
