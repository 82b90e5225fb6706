"""``geoseg run``: validate inputs, run the Dask pipeline, write COG + GeoPackage + STAC run record."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from geoseg.cluster import dask_client
from geoseg.compat import check_value_range, select_bands, work_grid
from geoseg.config import RunConfig, check_overlap
from geoseg.errors import ModelMismatchError
from geoseg.io.cog import BlockCOGWriter
from geoseg.io.raster import open_scene
from geoseg.io.vector import write_layer, write_layer_styles
from geoseg.models.checkpoint import file_sha256, read_checkpoint_meta
from geoseg.pipeline import NODATA, BlockResult, ModelTask, execute, make_plan
from geoseg.report import build_run_item, write_item
from geoseg.rundir import RUN_FILE, check_output, staging_dir
from geoseg.styles import categorized_polygon_qml
from geoseg.vectorize import BlockPolygons, merge_seams, polygons_to_frame

log = logging.getLogger("geoseg")

LANDCOVER_TIF = "landcover.tif"
GPKG = "geoseg.gpkg"


@dataclass
class RunSummary:
    out: Path
    skipped: bool
    tiles: int = 0
    tiles_skipped: int = 0
    polygons: int = 0
    seconds: float = 0.0
    notice: str | None = None


def fingerprint(cfg: RunConfig, model_sha: str) -> str:
    """Identity of a run's inputs and parameters (what decides whether a rerun has work to do)."""
    st = cfg.scene.stat()
    params = cfg.model_dump(mode="json", exclude={"out", "overwrite", "progress", "cluster"})
    blob = json.dumps(
        {
            "scene": [str(cfg.scene.resolve()), st.st_size, st.st_mtime_ns],
            "model": model_sha,
            "params": params,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def run_scene(cfg: RunConfig, notify=print) -> RunSummary:
    """Run one scene end to end; all validation happens before any output is created."""
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    scene = open_scene(cfg.scene)
    meta, _ = read_checkpoint_meta(cfg.model)
    if meta.task != "landcover":
        raise ModelMismatchError(f"{cfg.model}: a {meta.task} model; geoseg run needs a landcover model")
    overlap = meta.overlap if cfg.overlap is None else cfg.overlap
    try:
        check_overlap(overlap, cfg.tile)
    except ValueError as exc:
        raise ModelMismatchError(f"{cfg.model}: {exc}; choose --overlap") from None
    bands = select_bands(scene, meta, cfg.bands)
    check_value_range(scene, meta, bands)
    work, notice = work_grid(scene, meta, cfg.resample)
    if notice:
        notify(f"note: {notice}")
    model_sha = file_sha256(cfg.model)
    fp = fingerprint(cfg, model_sha)
    if check_output(cfg.out, fp, cfg.overwrite):
        notify(f"{cfg.out}: already complete for these inputs; nothing to do (--overwrite to redo)")
        return RunSummary(out=cfg.out, skipped=True)

    plan = make_plan(scene, bands, work, cfg.tile, overlap, cfg.batch, cfg.block)
    class_ids = tuple(c.id for c in meta.classes)
    names = {c.id: c.name for c in meta.classes}
    colors = {c.id: c.rgb for c in meta.classes}
    model = ModelTask(
        str(Path(cfg.model).resolve()), cfg.device, cfg.cluster.resolved_torch_threads(), class_ids
    )
    h, w = scene.shape
    crs_wkt = scene.geobox.crs.to_wkt()
    seams: list[BlockPolygons] = []
    n_polygons = 0

    with staging_dir(cfg.out) as stage:
        writer = BlockCOGWriter(
            stage / LANDCOVER_TIF,
            crs=crs_wkt,
            transform=scene.geobox.affine,
            width=w,
            height=h,
            dtype="uint8",
            nodata=NODATA,
            colormap=colors,
            class_names=names,
            tags={"GEOSEG_MODEL_SHA256": model_sha},
        )
        bar = tqdm(total=len(plan.grid), unit="tile", desc=scene.path.name, disable=not cfg.progress)

        gpkg = stage / GPKG

        def write_polygons(polys: list) -> None:
            """Append polygons to the layer as they are final: memory holds only seam polygons."""
            nonlocal n_polygons
            if polys or n_polygons == 0:
                frame = polygons_to_frame(polys, names, crs_wkt)
                write_layer(frame, gpkg, "landcover", append=n_polygons > 0)
                n_polygons += len(frame)

        def on_block(res: BlockResult) -> None:
            b = plan.blocks[res.index]
            writer.write(b.row_off, b.col_off, res.labels)
            write_polygons(res.polygons.interior)
            seams.append(replace(res.polygons, interior=[]))

        with writer, dask_client(cfg.cluster) as client:
            timings = execute(plan, client, model, cfg.blend, on_block, on_tiles=bar.update)
        bar.close()
        t_vec = time.perf_counter()
        write_polygons(merge_seams(seams))
        qml = categorized_polygon_qml("class_id", [(c.id, c.name, c.color) for c in meta.classes])
        write_layer_styles(gpkg, "landcover", qml, "landcover")
        timings.vectorize_s += time.perf_counter() - t_vec
        finished = datetime.now(timezone.utc)
        total = time.perf_counter() - t_start
        item = build_run_item(
            item_id=f"{scene.path.stem}-landcover",
            scene_path=scene.path,
            scene_crs=crs_wkt,
            scene_bounds=tuple(scene.geobox.extent.boundingbox),
            scene_shape=scene.shape,
            scene_transform=scene.geobox.affine,
            assets={
                "landcover": (
                    f"./{LANDCOVER_TIF}",
                    "image/tiff; application=geotiff; profile=cloud-optimized",
                    ["data", "classification"],
                    "Land-cover classes",
                ),
                "vectors": (f"./{GPKG}", "application/geopackage+sqlite3", ["data"], "Land-cover polygons"),
            },
            parameters=cfg.model_dump(mode="json", exclude={"overwrite", "progress"})
            | {
                "bands": bands,
                "work_grid": None if work is None else [int(work.shape.y), int(work.shape.x)],
                "fingerprint": fp,
            },
            model={"path": str(cfg.model), "sha256": model_sha, "metadata": meta.model_dump(mode="json")},
            timing=asdict(timings) | {"total_s": total, "tiles": len(plan.grid)},
            started=started,
            finished=finished,
        )
        item.properties["geoseg:fingerprint"] = fp
        write_item(item, stage / RUN_FILE)
    return RunSummary(
        out=cfg.out,
        skipped=False,
        tiles=len(plan.grid),
        tiles_skipped=timings.tiles_skipped,
        polygons=n_polygons,
        seconds=total,
        notice=notice,
    )
