"""Command-line interface (typer). Errors are reported as one line and a non-zero exit."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from geoseg.config import (
    DEFAULT_BUILDINGS_MODEL,
    DEFAULT_LANDCOVER_MODEL,
    DEFAULT_MMU_M2,
    ClusterConfig,
    RunConfig,
)
from geoseg.errors import GeosegError, InterruptedRun
from geoseg.inference.precision import PRECISIONS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Segment large GeoTIFF scenes with Dask.")

EXIT_USAGE = 2
PRECISION_HELP = (
    "f32, bf16, fp16 or auto (fastest native); default: f32 on CPU engines (the same class map on any CPU), "
    "float16 autocast on CUDA"
)
DEFAULT_MODELS = [
    DEFAULT_LANDCOVER_MODEL,
    DEFAULT_BUILDINGS_MODEL,
]  # geoseg run without --model: both products


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
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="checkpoint (.pt) or baseline:landcover / baseline:buildings; repeat for several products "
            "from one read (default: the bundled land-cover and building models)"
        ),
    ] = None,
    tile: Annotated[int, typer.Option(help="tile size in pixels (multiple of 32)")] = 512,
    overlap: Annotated[
        int | None, typer.Option(help="tile overlap in pixels (default: the model's recommended one)")
    ] = None,
    batch: Annotated[int, typer.Option(help="tiles per forward pass")] = 8,
    block: Annotated[int, typer.Option(help="output block size in pixels (multiple of 512)")] = 1024,
    bands: Annotated[str | None, typer.Option(help="1-based bands to use, e.g. 1,2,3")] = None,
    band_names: Annotated[
        str | None,
        typer.Option(help="role of each scene band, e.g. swir1,nir,red,green (scenes without descriptions)"),
    ] = None,
    resample: Annotated[bool, typer.Option(help="resample scenes whose GSD differs from the model's")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    engine: Annotated[
        str, typer.Option(help="auto (openvino on CPU where installed, else torch), torch, onnx or openvino")
    ] = "auto",
    amp: Annotated[bool, typer.Option(help="float16 autocast on CUDA devices")] = True,
    precision: Annotated[str | None, typer.Option(help=PRECISION_HELP)] = None,
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
    date: Annotated[
        str | None, typer.Option(help="acquisition date YYYY-MM-DD (default: scene tags, else file name)")
    ] = None,
    date_pattern: Annotated[
        str | None, typer.Option(help="regex for the date in the file name (groups year, month, day)")
    ] = None,
    confidence: Annotated[
        bool, typer.Option(help="also keep confidence.tif (winning-class probability x 255)")
    ] = False,
    mmu: Annotated[
        float, typer.Option(help="minimum mapping unit in m²: smaller regions merge into their surroundings")
    ] = DEFAULT_MMU_M2,
    wait: Annotated[
        bool, typer.Option(help="wait for another run writing the same --out instead of failing")
    ] = False,
) -> None:
    """Segment SCENE: landcover.tif (buildings.tif for building models), geoseg.gpkg, run.json in OUT."""
    try:
        cfg = RunConfig(
            scene=scene,
            out=out,
            model=(model or [DEFAULT_LANDCOVER_MODEL])[0],
            models=model if model and len(model) > 1 else [] if model else DEFAULT_MODELS,
            tile=tile,
            overlap=overlap,
            batch=batch,
            block=block,
            bands=_parse_bands(bands),
            band_names=_split([band_names]) if band_names else None,
            resample=resample,
            device=device,
            engine=engine,
            amp=amp,
            precision=precision,
            overwrite=overwrite,
            progress=progress,
            date=date,
            date_pattern=date_pattern,
            confidence=confidence,
            mmu_m2=mmu,
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
    from geoseg.run.job import run_scene

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
    from geoseg.run.cluster import ClusterStart
    from geoseg.run.workflow import load_workflow

    try:
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


def _parse_groups(values: list[str] | None) -> dict[str, list[str]] | None:
    if not values:
        return None
    groups: dict[str, list[str]] = {}
    for v in values:
        name, _, members = v.partition("=")
        if not name.strip() or not members.strip():
            _fail(f"--group must be NAME=class,class, got {v!r}")
        groups[name.strip()] = _split([members])
    return groups


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
    label_classes: Annotated[
        str | None, typer.Option(help="the labels' class names in id order, where they are not the model's")
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(help="score merged classes, repeatable: NAME=class,class (model and label classes)"),
    ] = None,
    band_names: Annotated[
        str | None, typer.Option(help="role of each band of the images, e.g. red,green,blue,nir")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the scores as JSON")] = None,
    batch: Annotated[int, typer.Option(help="tiles per forward pass")] = 8,
    resample: Annotated[bool, typer.Option(help="resample scenes whose GSD differs from the model's")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    precision: Annotated[str | None, typer.Option(help=PRECISION_HELP)] = None,
) -> None:
    """Score a model (or a classical baseline) against labels: IoU, F1, precision, recall, object F1."""
    from geoseg.evaluation.evaluate import Segmenter, evaluate_chips, evaluate_scenes
    from geoseg.io.labels import pair_labels

    images, labels = images or [], labels or []
    if bool(images) == bool(chips):
        _fail("give either --images with --labels, or --chips with --colors")
    if images and len(labels) not in (1, len(images)):
        _fail(f"{len(images)} image(s) need 1 or {len(images)} --labels")
    if chips and colors is None:
        _fail("--chips needs --colors")
    box = _parse_bounds(bounds)
    if precision is not None and precision not in PRECISIONS:
        _fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    groups = _parse_groups(group)
    notify = lambda m: typer.echo(m, err=True)  # noqa: E731
    try:
        seg = Segmenter(
            model,
            device=device,
            batch=batch,
            resample=resample,
            band_names=_split([band_names]) if band_names else None,
            precision=precision,
        )
        if chips:
            report = evaluate_chips(seg, chips, colors, subfolder, notify=notify)
        else:
            pairs = pair_labels(images, labels)
            report = evaluate_scenes(
                seg,
                pairs,
                class_field,
                box,
                notify=notify,
                label_classes=_split([label_classes or ""]) or None,
                groups=groups,
            )
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


@app.command()
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
    names: Annotated[
        str | None, typer.Option(help="class names when the map has none: 1=forest,2=water")
    ] = None,
    nodata: Annotated[
        str | None,
        typer.Option(help="values that are not classes (default: 0 and the raster's nodata), or none"),
    ] = None,
    blind: Annotated[bool, typer.Option(help="leave the map class out of the point layer")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing sample file")] = False,
) -> None:
    """Stratified random sample of MAP's pixels (strata = classes) as points for labelling in QGIS."""
    from geoseg.areas.cli import run_sample

    try:
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
    except GeosegError as exc:
        _fail(str(exc))


@app.command()
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
    names: Annotated[
        str | None, typer.Option(help="class names when the map has none: 1=forest,2=water")
    ] = None,
    nodata: Annotated[
        str | None,
        typer.Option(help="values that are not classes (default: 0 and the raster's nodata), or none"),
    ] = None,
) -> None:
    """Error-adjusted areas with 95 % confidence intervals, user's/producer's/overall accuracy."""
    from geoseg.areas.cli import run_areas

    if (samples is None) == (confusion is None):
        _fail("give a labelled SAMPLES GeoPackage, or --confusion scores.json for an approximation")
    try:
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
    except GeosegError as exc:
        _fail(str(exc))
EXIT_BUSY = 75  # sysexits EX_TEMPFAIL: another monitor call holds the lock; try again later


@app.command()
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
        _fail(str(exc))
    typer.echo(json.dumps(summary.to_dict(), indent=2) if json_out else summary.line())
    raise typer.Exit(summary.exit_code)


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


if __name__ == "__main__":
    main()


@app.command()
def change(
    before: Annotated[Path, typer.Argument(help="run folder (or scene) of the earlier date")],
    after: Annotated[Path, typer.Argument(help="run folder (or scene) of the later date")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
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
    model: Annotated[Path | None, typer.Option(help="checkpoint for scenes given as BEFORE/AFTER")] = None,
    bands: Annotated[
        str | None, typer.Option(help="bands of scenes given as BEFORE/AFTER, e.g. 1,2,3")
    ] = None,
    resample: Annotated[bool, typer.Option(help="resample scenes whose GSD differs from the model's")] = True,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output folder")] = False,
    progress: Annotated[bool, typer.Option(help="show progress")] = True,
) -> None:
    """Change between two dates: change.tif, change.gpkg, transitions.csv, change.json in OUT."""
    from geoseg.change import ChangeConfig, run_change

    try:
        cfg = ChangeConfig(
            before=before,
            after=after,
            out=out,
            grid=grid,
            min_confidence=min_confidence,
            before_mask=before_mask,
            after_mask=after_mask,
            model=model,
            bands=_parse_bands(bands),
            resample=resample,
            overwrite=overwrite,
            progress=progress,
            **({} if mmu is None else {"mmu_m2": mmu}),
        )
    except ValidationError as exc:
        _config_error(exc)
    try:
        s = run_change(cfg, notify=lambda m: typer.echo(m, err=True))
    except GeosegError as exc:
        _fail(str(exc))
    if not s.skipped:
        extra = "".join(
            f", {v} buildings {k}" for k, v in s.buildings.items() if k in ("new", "removed", "changed")
        )
        typer.echo(
            f"{s.out}: {s.changed_m2:,.0f} m² changed of {s.compared_m2:,.0f} m² compared "
            f"({s.regions} change regions{extra}) in {s.seconds:.1f} s"
        )
