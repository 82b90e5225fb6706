"""Command-line interface (typer). Errors are reported as one line and a non-zero exit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from geoseg.config import DEFAULT_LANDCOVER_MODEL, ClusterConfig, RunConfig
from geoseg.errors import GeosegError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Segment large GeoTIFF scenes with Dask.")

EXIT_USAGE = 2


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _parse_bands(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        _fail(f"--bands must be comma-separated band numbers, got {value!r}")
    return None


@app.command()
def run(
    scene: Annotated[Path, typer.Argument(help="input GeoTIFF scene")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    model: Annotated[Path, typer.Option(help="checkpoint (.pt)")] = DEFAULT_LANDCOVER_MODEL,
    tile: Annotated[int, typer.Option(help="tile size in pixels (multiple of 32)")] = 512,
    overlap: Annotated[
        int | None, typer.Option(help="tile overlap in pixels (default: the model's recommended one)")
    ] = None,
    batch: Annotated[int, typer.Option(help="tiles per forward pass")] = 8,
    block: Annotated[int, typer.Option(help="output block size in pixels (multiple of 512)")] = 1024,
    bands: Annotated[str | None, typer.Option(help="1-based bands to use, e.g. 1,2,3")] = None,
    resample: Annotated[bool, typer.Option(help="resample scenes whose GSD differs from the model's")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    workers: Annotated[int | None, typer.Option(help="LocalCluster worker processes")] = None,
    threads_per_worker: Annotated[int, typer.Option(help="Dask threads per worker")] = 2,
    torch_threads: Annotated[int | None, typer.Option(help="torch threads per worker")] = None,
    scheduler: Annotated[str | None, typer.Option(help="existing Dask scheduler address")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output folder")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Segment SCENE into land-cover classes: landcover.tif, geoseg.gpkg and run.json in OUT."""
    from geoseg.run import run_scene

    try:
        cfg = RunConfig(
            scene=scene,
            out=out,
            model=model,
            tile=tile,
            overlap=overlap,
            batch=batch,
            block=block,
            bands=_parse_bands(bands),
            resample=resample,
            device=device,
            overwrite=overwrite,
            progress=progress,
            cluster=ClusterConfig(
                scheduler=scheduler,
                workers=workers,
                threads_per_worker=threads_per_worker,
                torch_threads=torch_threads,
            ),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        _fail(f"invalid option {loc}: {err['msg']}")
    try:
        summary = run_scene(cfg, notify=lambda m: typer.echo(m, err=True))
    except GeosegError as exc:
        _fail(str(exc))
    if not summary.skipped:
        typer.echo(
            f"{summary.out}: {summary.tiles} tiles ({summary.tiles_skipped} nodata-only skipped), "
            f"{summary.polygons} polygons in {summary.seconds:.1f} s"
        )


@app.command()
def workflow(
    file: Annotated[Path, typer.Argument(help="workflow YAML (see workflows/)")],
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Run every scene of a workflow file; scenes already finished with the same inputs are skipped."""
    from geoseg.run import run_scene
    from geoseg.workflow import load_workflow

    try:
        wf, runs = load_workflow(file)
        for cfg in runs:
            summary = run_scene(
                cfg.model_copy(update={"progress": progress}), notify=lambda m: typer.echo(m, err=True)
            )
            state = "up to date" if summary.skipped else f"{summary.tiles} tiles in {summary.seconds:.1f} s"
            typer.echo(f"{wf.name}: {cfg.scene.name} -> {cfg.out}: {state}")
    except GeosegError as exc:
        _fail(str(exc))


@app.command()
def models() -> None:
    """List the architectures geoseg can build and the bundled checkpoints."""
    from geoseg.models.checkpoint import read_checkpoint_meta
    from geoseg.models.registry import ARCHITECTURES

    typer.echo("architectures: " + ", ".join(sorted(ARCHITECTURES)))
    ckpt_dir = DEFAULT_LANDCOVER_MODEL.parent
    for path in sorted(ckpt_dir.glob("*.pt")):
        meta, _ = read_checkpoint_meta(path)
        classes = ", ".join(c.name for c in meta.classes)
        score = meta.metrics.get("val_miou")
        typer.echo(
            f"{path.name}: {meta.task} {meta.arch}/{meta.encoder} bands={'/'.join(meta.bands)} "
            f"{meta.input_dtype} gsd={meta.gsd_m} m classes=[{classes}]"
            + (f" val_mIoU={score:.3f}" if score is not None else "")
        )


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
