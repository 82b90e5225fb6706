"""Command-line interface (typer): one module per command, shared options and the error formatter in
``geoseg.cli.common``. Errors are reported as one line (``error: ...``) and a non-zero exit."""

from __future__ import annotations

import os
import sys

import typer

from geoseg.cli import areas, change, evaluate, models, monitor, run, runs, sample, train, workflow

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Segment large GeoTIFF scenes with Dask.")
for _command in (
    run.run,
    workflow.workflow,
    train.train,
    evaluate.evaluate,
    runs.runs,
    models.models,
    sample.sample,
    areas.areas,
    monitor.monitor,
    change.change,
):
    app.command()(_command)

# commands that run the model in their own process: they start with the allocator settings
IN_PROCESS_MODEL_COMMANDS = {"train", "evaluate"}


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if len(sys.argv) > 1 and (
        sys.argv[1] in IN_PROCESS_MODEL_COMMANDS or (sys.argv[1] == "run" and "--in-process" in sys.argv)
    ):
        from geoseg.run.allocator import reexec_with_allocator_env

        reexec_with_allocator_env(sys.argv[1:])
    app()
