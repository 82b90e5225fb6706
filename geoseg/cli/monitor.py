"""``geoseg monitor``: process a monitoring workflow's new scenes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    EXIT_BUSY,
    EXIT_USAGE,
    fail,
)
from geoseg.errors import GeosegError


def monitor(
    file: Annotated[Path, typer.Argument(help="monitoring workflow YAML (workflows/naip_north_dakota.yaml)")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable summary on stdout")] = False,
    wait: Annotated[bool, typer.Option(help="wait for a running call on the same output folder")] = False,
) -> None:
    """Process new scenes of a monitoring workflow: runs clipped to the AOI, change against the previous
    date, history.gpkg, timeseries.csv/png, catalog.json. Exit 0 ok / nothing new, 1 some scenes failed,
    2 bad workflow, 75 another call is running."""
    import json
    import signal

    from geoseg.monitor import MonitorBusyError, load_monitor_workflow, run_monitor

    # SIGTERM (systemd stop, orchestrator timeout) unwinds like Ctrl-C: staging folders are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        wf = load_monitor_workflow(file)
        summary = run_monitor(wf, notify=lambda m: typer.echo(m, err=True), wait=wait)
    except MonitorBusyError as exc:
        if json_out:
            typer.echo(json.dumps({"busy": True, "message": str(exc), "exit_code": EXIT_BUSY}))
        typer.echo(f"busy: {exc}", err=True)
        raise typer.Exit(EXIT_BUSY) from None
    except GeosegError as exc:
        if json_out:
            typer.echo(json.dumps({"error": str(exc), "exit_code": EXIT_USAGE}))
        fail(str(exc))
    typer.echo(json.dumps(summary.to_dict(), indent=2) if json_out else summary.line())
    raise typer.Exit(summary.exit_code)
