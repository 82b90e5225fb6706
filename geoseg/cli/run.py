"""``geoseg run``: segment one scene."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.common import (
    DEFAULT_MODELS,
    Batch,
    Device,
    OutFolder,
    OverwriteFolder,
    PrecisionOpt,
    Resample,
    parse_bands,
    reported,
    split,
)
from geoseg.config import (
    DEFAULT_LANDCOVER_MODEL,
    DEFAULT_MMU_M2,
    ClusterConfig,
    RunConfig,
)


def run(
    scene: Annotated[Path, typer.Argument(help="input GeoTIFF scene")],
    out: OutFolder,
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
    batch: Batch = 8,
    block: Annotated[int, typer.Option(help="output block size in pixels (multiple of 512)")] = 1024,
    bands: Annotated[str | None, typer.Option(help="1-based bands to use, e.g. 1,2,3")] = None,
    band_names: Annotated[
        str | None,
        typer.Option(help="role of each scene band, e.g. swir1,nir,red,green (scenes without descriptions)"),
    ] = None,
    resample: Resample = True,
    device: Device = "auto",
    engine: Annotated[
        str, typer.Option(help="auto (openvino on CPU where installed, else torch), torch, onnx or openvino")
    ] = "auto",
    amp: Annotated[bool, typer.Option(help="float16 autocast on CUDA devices")] = True,
    precision: PrecisionOpt = None,
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
    overwrite: OverwriteFolder = False,
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
    with reported(out):
        cfg = RunConfig(
            scene=scene,
            out=out,
            model=model[0] if model else DEFAULT_LANDCOVER_MODEL,
            models=model if model and len(model) > 1 else [] if model else DEFAULT_MODELS,
            tile=tile,
            overlap=overlap,
            batch=batch,
            block=block,
            bands=parse_bands(bands),
            band_names=split([band_names]) if band_names else None,
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
    from geoseg.run.job import run_scene

    with reported(out):
        summary = run_scene(cfg, notify=lambda m: typer.echo(m, err=True), wait=wait)
    if not summary.skipped:
        typer.echo(
            f"{summary.out}: {summary.tiles} tiles ({summary.tiles_skipped} nodata-only skipped), "
            f"{summary.polygons} polygons in {summary.seconds:.1f} s"
        )
