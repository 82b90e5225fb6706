"""``geoseg areas``: error-adjusted areas from a labelled sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    ClassNames,
    NotClasses,
    fail,
    reported,
)


def areas(
    map_path: Annotated[Path, typer.Argument(metavar="MAP", help="the class map the sample was drawn from")],
    samples: Annotated[
        Path | None, typer.Argument(help="labelled sample GeoPackage (ref_class filled)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write JSON here (and a .csv beside it)")
    ] = None,
    confusion: Annotated[
        Path | None, typer.Option(help="no sample: APPROXIMATE from a `geoseg evaluate --out` JSON")
    ] = None,
    skip_unlabelled: Annotated[bool, typer.Option(help="leave unlabelled samples out")] = False,
    names: ClassNames = None,
    nodata: NotClasses = None,
) -> None:
    """Error-adjusted areas with 95 % confidence intervals, user's/producer's/overall accuracy."""
    from geoseg.areas.cli import run_areas

    if (samples is None) == (confusion is None):
        fail("give a labelled SAMPLES GeoPackage, or --confusion scores.json for an approximation")
    with reported(map_path):
        run_areas(
            map_path,
            samples,
            out=out,
            confusion=confusion,
            skip_unlabelled=skip_unlabelled,
            names=names,
            nodata=nodata,
            echo=typer.echo,
        )
