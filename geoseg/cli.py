"""Command-line interface (typer). Errors are reported as one line and a non-zero exit."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from geoseg.config import DEFAULT_LANDCOVER_MODEL, ClusterConfig, RunConfig
from geoseg.errors import GeosegError, InterruptedRun

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Segment large GeoTIFF scenes with Dask.")

EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)  # always one line
    raise typer.Exit(code)


def _interrupted(exc: InterruptedRun) -> NoReturn:
    """SIGINT/SIGTERM: one line, exit 128 + the signal number (130, 143) like a shell."""
    _fail(str(exc), 128 + exc.signum)


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
    engine: Annotated[
        str, typer.Option(help="auto (openvino on CPU where installed, else torch), torch, onnx or openvino")
    ] = "auto",
    amp: Annotated[bool, typer.Option(help="float16 autocast on CUDA devices")] = True,
    workers: Annotated[int | None, typer.Option(help="LocalCluster workers")] = None,
    processes: Annotated[
        bool,
        typer.Option(
            "--processes/--in-process",
            help="workers in own processes (default), or one in this process (faster start, more memory)",
        ),
    ] = True,
    threads_per_worker: Annotated[int, typer.Option(help="Dask threads per worker")] = 2,
    torch_threads: Annotated[int | None, typer.Option(help="torch threads per worker")] = None,
    scheduler: Annotated[str | None, typer.Option(help="existing Dask scheduler address")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output folder")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    wait: Annotated[
        bool, typer.Option(help="wait for another run writing the same --out instead of failing")
    ] = False,
) -> None:
    """Segment SCENE: landcover.tif (buildings.tif for building models), geoseg.gpkg, run.json in OUT."""
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
            engine=engine,
            amp=amp,
            overwrite=overwrite,
            progress=progress,
            cluster=ClusterConfig(
                scheduler=scheduler,
                workers=workers,
                processes=processes,
                threads_per_worker=threads_per_worker,
                torch_threads=torch_threads,
            ),
        )
    except ValidationError as exc:
        _config_error(exc)
    from geoseg.run import run_scene

    try:
        summary = run_scene(cfg, notify=lambda m: typer.echo(m, err=True), wait=wait)
    except InterruptedRun as exc:
        _interrupted(exc)
    except GeosegError as exc:
        _fail(str(exc))
    except OSError as exc:  # e.g. the disk filled up under a library that does not say which file
        _fail(f"{exc.filename or cfg.out}: {exc.strerror or exc}")
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
    from geoseg.cluster import ClusterStart
    from geoseg.workflow import load_workflow

    try:
        wf, runs = load_workflow(file)
        # one cluster for all scenes, started by the first scene that has work to do
        with ClusterStart(wf.cluster, reuse=True) as cluster:
            from geoseg.run import run_scene

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
    except InterruptedRun as exc:
        _interrupted(exc)
    except GeosegError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or file}: {exc.strerror or exc}")


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated values."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _config_error(exc: ValidationError) -> NoReturn:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    _fail(f"invalid option {loc}: {err['msg']}" if loc else f"invalid options: {err['msg']}")


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder (config, metrics, checkpoints)")],
    task: Annotated[str, typer.Option(help="landcover or buildings")] = "landcover",
    images: Annotated[list[Path] | None, typer.Option(help="training GeoTIFF(s), repeatable")] = None,
    labels: Annotated[
        list[Path] | None,
        typer.Option(help="label polygons (GeoPackage/GeoJSON) or rasters, per image or one"),
    ] = None,
    val_images: Annotated[list[Path] | None, typer.Option(help="held-out validation GeoTIFF(s)")] = None,
    val_labels: Annotated[list[Path] | None, typer.Option(help="labels of --val-images")] = None,
    val_fraction: Annotated[
        float, typer.Option(help="without --val-images: trailing strip of each scene held out")
    ] = 0.2,
    chips: Annotated[
        Path | None, typer.Option(help="folder of images/ + masks/ chip pairs (no georef)")
    ] = None,
    colors: Annotated[Path | None, typer.Option(help="YAML colour-to-class table for --chips masks")] = None,
    val_chips: Annotated[str | None, typer.Option(help="chip sub-folder held out for validation")] = None,
    classes: Annotated[str | None, typer.Option(help="class names in id order, e.g. forest,water")] = None,
    class_field: Annotated[str | None, typer.Option(help="label attribute holding class name or id")] = None,
    bands: Annotated[str | None, typer.Option(help="band names to record, e.g. red,green,blue,nir")] = None,
    arch: Annotated[str, typer.Option(help="architecture (geoseg models)")] = "unet",
    encoder: Annotated[str, typer.Option(help="smp encoder name")] = "mobilenet_v2",
    encoder_depth: Annotated[int | None, typer.Option(help="encoder stages (unets: 3)")] = None,
    encoder_weights: Annotated[Path | None, typer.Option(help="local encoder weight file (.pth)")] = None,
    epochs: Annotated[int, typer.Option(help="epochs")] = 10,
    steps_per_epoch: Annotated[int, typer.Option(help="optimizer steps per epoch")] = 50,
    batch: Annotated[int, typer.Option(help="windows per step")] = 8,
    size: Annotated[int, typer.Option(help="training window in pixels")] = 256,
    lr: Annotated[float, typer.Option(help="peak learning rate (warm-up, then cosine decay)")] = 2e-3,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    sampler: Annotated[str, typer.Option(help="random or grid windows")] = "random",
    gsd: Annotated[float | None, typer.Option(help="resample imagery to this GSD in metres")] = None,
    overlap: Annotated[int, typer.Option(help="tile overlap recorded for geoseg run")] = 128,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
) -> None:
    """Train a model; rerunning the same command resumes after the last finished epoch."""
    from geoseg.train.config import TrainConfig
    from geoseg.train.job import train_model

    try:
        cfg = TrainConfig(
            task=task,
            out=out,
            images=images or [],
            labels=labels or [],
            val_images=val_images or [],
            val_labels=val_labels or [],
            val_fraction=val_fraction,
            chips=chips,
            colors=colors,
            val_chips=val_chips,
            classes=_split([classes]) if classes else None,
            class_field=class_field,
            bands=_split([bands]) if bands else None,
            arch=arch.lower(),
            encoder=encoder,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            batch=batch,
            size=size,
            lr=lr,
            seed=seed,
            sampler=sampler,
            gsd_m=gsd,
            overlap=overlap,
            threads=threads,
        )
    except ValidationError as exc:
        _config_error(exc)
    try:
        result = train_model(cfg, overwrite=overwrite, notify=lambda m: typer.echo(m, err=True))
    except GeosegError as exc:
        _fail(str(exc))
    except ValueError as exc:  # smp rejects an encoder/architecture combination
        _fail(f"{cfg.arch}/{cfg.encoder}: {exc}")
    state = "already complete" if result.complete_before else "done"
    typer.echo(
        f"{result.run.root}: {state}; best {result.score_name} {result.best_score:.3f} "
        f"at epoch {result.best_epoch} -> {result.run.best}"
    )


def _parse_bounds(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        b = tuple(float(v) for v in value.split(","))
    except ValueError:
        b = ()
    if len(b) != 4 or b[0] >= b[2] or b[1] >= b[3]:
        _fail(f"--bounds must be xmin,ymin,xmax,ymax in the image CRS, got {value!r}")
    return b  # type: ignore[return-value]


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="checkpoint (.pt) or baseline:landcover / baseline:buildings")],
    images: Annotated[list[Path] | None, typer.Option(help="GeoTIFF(s) to score, repeatable")] = None,
    labels: Annotated[
        list[Path] | None, typer.Option(help="label polygons or rasters, per image or one")
    ] = None,
    class_field: Annotated[str | None, typer.Option(help="label attribute holding class name or id")] = None,
    bounds: Annotated[str | None, typer.Option(help="score only xmin,ymin,xmax,ymax (image CRS)")] = None,
    chips: Annotated[Path | None, typer.Option(help="image/mask chip folder instead of GeoTIFFs")] = None,
    colors: Annotated[Path | None, typer.Option(help="colour table of the --chips masks")] = None,
    subfolder: Annotated[str | None, typer.Option(help="only chips under this sub-folder name")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the scores as JSON")] = None,
    batch: Annotated[int, typer.Option(help="tiles per forward pass")] = 8,
    resample: Annotated[bool, typer.Option(help="resample scenes whose GSD differs from the model's")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
) -> None:
    """Score a model (or a classical baseline) against labels: IoU, F1, precision, recall, object F1."""
    from geoseg.evaluate import Segmenter, evaluate_chips, evaluate_scenes
    from geoseg.train.labels import pair_labels

    images, labels = images or [], labels or []
    if bool(images) == bool(chips):
        _fail("give either --images with --labels, or --chips with --colors")
    if images and len(labels) not in (1, len(images)):
        _fail(f"{len(images)} image(s) need 1 or {len(images)} --labels")
    if chips and colors is None:
        _fail("--chips needs --colors")
    box = _parse_bounds(bounds)
    notify = lambda m: typer.echo(m, err=True)  # noqa: E731
    try:
        seg = Segmenter(model, device=device, batch=batch, resample=resample)
        if chips:
            report = evaluate_chips(seg, chips, colors, subfolder, notify=notify)
        else:
            pairs = pair_labels(images, labels)
            report = evaluate_scenes(seg, pairs, class_field, box, notify=notify)
    except GeosegError as exc:
        _fail(str(exc))
    except ValueError as exc:  # unknown baseline name or device
        _fail(str(exc))
    typer.echo(report.table())
    if out is not None:
        report.write(out)
        typer.echo(f"scores written to {out}")


@app.command()
def runs(root: Annotated[Path, typer.Argument(help="a run folder or a folder of run folders")]) -> None:
    """List training runs with their progress and best validation score."""
    from geoseg.train.tracking import list_runs

    found = list_runs(root)
    if not found:
        _fail(f"{root}: no training runs found")
    for r in found:
        best = (
            f"{r.score_name} {r.best_score:.3f} @ epoch {r.best_epoch}" if r.best_score is not None else "-"
        )
        typer.echo(f"{r.path}  {r.task:<9} {r.model:<24} epochs {r.epochs_done}/{r.epochs}  best {best}")


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
        key = "val_iou_building" if meta.task == "buildings" else "val_miou"
        score = meta.metrics.get(key)
        typer.echo(
            f"{path.name}: {meta.task} {meta.arch}/{meta.encoder} bands={'/'.join(meta.bands)} "
            f"{meta.input_dtype} gsd={meta.gsd_m} m classes=[{classes}]"
            + (f" {key}={score:.3f}" if score is not None else "")
        )


# commands that run the model in their own process: they start with the allocator settings
IN_PROCESS_MODEL_COMMANDS = {"train", "evaluate"}


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if len(sys.argv) > 1 and (
        sys.argv[1] in IN_PROCESS_MODEL_COMMANDS or (sys.argv[1] == "run" and "--in-process" in sys.argv)
    ):
        from geoseg.allocator import reexec_with_allocator_env

        reexec_with_allocator_env(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
