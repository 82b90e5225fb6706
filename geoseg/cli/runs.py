"""``geoseg runs``: list training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    fail,
)


def runs(root: Annotated[Path, typer.Argument(help="a run folder or a folder of run folders")]) -> None:
    """List training runs with their progress and best validation score."""
    from geoseg.train.tracking import list_runs

    found = list_runs(root)
    if not found:
        fail(f"{root}: no training runs found")
    for r in found:
        best = (
            f"{r.score_name} {r.best_score:.3f} @ epoch {r.best_epoch}" if r.best_score is not None else "-"
        )
        typer.echo(f"{r.path}  {r.task:<9} {r.model:<24} epochs {r.epochs_done}/{r.epochs}  best {best}")
