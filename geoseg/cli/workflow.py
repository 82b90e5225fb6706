"""``geoseg workflow``: every scene of a workflow file on one cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    reported,
)


def workflow(
    file: Annotated[Path, typer.Argument(help="workflow YAML (see workflows/)")],
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Run every scene of a workflow file; scenes already finished with the same inputs are skipped."""
    from geoseg.run.cluster import ClusterStart
    from geoseg.run.workflow import load_workflow

    with reported(file):
        wf, runs = load_workflow(file)
        # one cluster for all scenes, started by the first scene that has work to do
        with ClusterStart(wf.cluster, reuse=True) as cluster:
            from geoseg.run.job import run_scene

            for cfg in runs:
                summary = run_scene(
                    cfg.model_copy(update={"progress": progress}),
                    notify=lambda m: typer.echo(m, err=True),
                    cluster=cluster,
                )
                state = (
                    "up to date" if summary.skipped else f"{summary.tiles} tiles in {summary.seconds:.1f} s"
                )
                typer.echo(f"{wf.name}: {cfg.scene.name} -> {cfg.out}: {state}")
