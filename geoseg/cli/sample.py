"""``geoseg sample``: a stratified sample of a class map for labelling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    ClassNames,
    NotClasses,
    reported,
)


def sample(
    map_path: Annotated[
        Path, typer.Argument(metavar="MAP", help="class map raster (landcover.tif, change.tif, ...)")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="sample GeoPackage to write (.gpkg)")],
    n: Annotated[int | None, typer.Option(help="total sample size (default: from --target-se)")] = None,
    seed: Annotated[int, typer.Option(help="random seed (same map + seed + sizes = same sample)")] = 0,
    allocation: Annotated[
        str,
        typer.Option(
            help="olofsson (rare strata get --min-per-stratum, rest proportional), proportional, equal"
        ),
    ] = "olofsson",
    min_per_stratum: Annotated[int, typer.Option(help="sample units of each rare stratum")] = 50,
    target_se: Annotated[
        float, typer.Option(help="without --n: target standard error of overall accuracy (Olofsson eq. 13)")
    ] = 0.01,
    expected_ua: Annotated[
        str | None,
        typer.Option(help="expected user's accuracies for --target-se: 0.85, or forest=0.9,water=0.95"),
    ] = None,
    per_stratum: Annotated[str | None, typer.Option(help="fixed sizes instead: forest=100,water=50")] = None,
    names: ClassNames = None,
    nodata: NotClasses = None,
    blind: Annotated[bool, typer.Option(help="leave the map class out of the point layer")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing sample file")] = False,
) -> None:
    """Stratified random sample of MAP's pixels (strata = classes) as points for labelling in QGIS."""
    from geoseg.areas.cli import run_sample

    with reported(out):
        run_sample(
            map_path,
            out,
            n=n,
            seed=seed,
            allocation=allocation,
            min_per_stratum=min_per_stratum,
            target_se=target_se,
            expected_ua=expected_ua,
            per_stratum=per_stratum,
            names=names,
            nodata=nodata,
            blind=blind,
            overwrite=overwrite,
            echo=typer.echo,
        )
