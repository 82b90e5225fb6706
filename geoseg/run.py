"""``geoseg run``: validate inputs, run the Dask pipeline, write COG + GeoPackage + STAC run record."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from geoseg.allocator import release_free_memory
from geoseg.cluster import ClusterStart
from geoseg.compat import check_value_range, select_bands, work_grid
from geoseg.config import RunConfig, check_overlap
from geoseg.errors import InterruptedRun, ModelMismatchError, OutputError, SceneError
from geoseg.io.cog import BlockCOGWriter
from geoseg.io.raster import Scene, open_scene
from geoseg.io.vector import write_layer, write_layer_styles
from geoseg.locking import output_lock
from geoseg.models.meta import CheckpointMeta, file_sha256, read_meta
from geoseg.ov_predictor import runs_without_torch
from geoseg.pipeline import NODATA, BlockResult, ModelTask, execute, make_plan
from geoseg.preflight import Interrupts, check_device, check_out_writable, check_scene_file, check_scheduler
from geoseg.report import COG_MEDIA, GPKG_MEDIA, build_run_item, write_item
from geoseg.resume import BLOCKS_DIR, BlockStore
from geoseg.rundir import (
    OUTPUTS_KEY,
    RUN_FILE,
    check_out_path,
    check_output,
    clean_stale,
    commit,
    output_records,
    stage_path,
)
from geoseg.styles import categorized_polygon_qml
from geoseg.vectorize import SeamMerger, polygons_to_frame
from tiles import Window

log = logging.getLogger("geoseg")

LANDCOVER_TIF = "landcover.tif"
# final polygons per GeoPackage append (one transaction each). 32,000 cut the writes of the 8192² scene's
# 68,481 polygons by 16 % offline, but held 70-90 MB more in the client at 16384² for no wall-time gain
# there (148.9-152.4 s with 8,000, 149.8 s with 32,000)
POLYGONS_PER_WRITE = 8000
GPKG = "geoseg.gpkg"
MIN_WORK_PX = 2  # thinnest scene side, in pixels of the grid the model runs on


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


def run_scene(
    cfg: RunConfig, notify=print, cluster: ClusterStart | None = None, wait: bool = False
) -> RunSummary:
    """Run one scene end to end; all validation happens before any output is created (or a cluster
    started).

    ``cluster``: a cluster to share between scenes (started on first use); by default one is started
    here for ``cfg.cluster`` once the inputs are checked, and closed again. ``wait``: if another process
    is writing ``cfg.out``, wait for it instead of failing with ``OutputLockedError``. SIGINT and SIGTERM
    raise ``InterruptedRun`` (the finished blocks stay in the staging folder for a rerun to resume).
    """
    check_options(cfg)
    with Interrupts().active() as interrupts:
        if cluster is not None:
            return _run_scene(cfg, notify, cluster, wait, interrupts)
        with ClusterStart(cfg.cluster) as own:
            return _run_scene(cfg, notify, own, wait, interrupts)


def check_options(cfg: RunConfig) -> None:
    """What can be checked before the scene is opened: scene file kind, device, scheduler, output path."""
    check_scene_file(cfg.scene)
    check_device(cfg.device)
    if cfg.cluster.scheduler:
        check_scheduler(cfg.cluster.scheduler)
    check_out_path(cfg.out, [cfg.scene, cfg.model])
    check_out_writable(cfg.out)


def _run_scene(
    cfg: RunConfig, notify, cluster: ClusterStart, wait: bool, interrupts: Interrupts
) -> RunSummary:
    started = datetime.now(timezone.utc)
    t_start, t_start_wall = time.perf_counter(), time.time()
    scene = open_scene(cfg.scene)
    meta = read_meta(cfg.model)
    names = {c.id: c.name for c in meta.classes}
    if meta.task == "buildings" and "building" not in names.values():
        raise ModelMismatchError(f"{cfg.model}: a buildings model needs a class named 'building'")
    overlap = meta.overlap if cfg.overlap is None else cfg.overlap
    try:
        check_overlap(overlap, cfg.tile)
    except ValueError as exc:
        raise ModelMismatchError(f"{cfg.model}: {exc}; choose --overlap") from None
    bands = select_bands(scene, meta, cfg.bands)
    check_value_range(scene, meta, bands)
    work, notice = work_grid(scene, meta, cfg.resample)
    check_work_shape(scene, work)
    if notice:
        notify(f"note: {notice}")
    model_sha = file_sha256(cfg.model)
    fp = fingerprint(cfg, model_sha)
    with output_lock(cfg.out, wait=wait, notify=notify):
        return _locked_run(
            cfg,
            notify,
            cluster,
            interrupts,
            scene,
            meta,
            names,
            overlap,
            bands,
            work,
            notice,
            model_sha,
            fp,
            started,
            t_start,
            t_start_wall,
        )


def check_work_shape(scene: Scene, work) -> None:
    """Refuse a scene that resampling to the model's GSD would squeeze below one pixel across: its
    tiles would read back as nodata and the whole result would be nodata although the input is valid."""
    if work is None:
        return
    factor = abs(work.affine.a / scene.geobox.affine.a)  # scene pixels per work-grid pixel
    sh, sw = scene.shape
    for name, n in (("high", sh), ("wide", sw)):
        if n / factor < MIN_WORK_PX:
            raise SceneError(
                f"{scene.path}: only {n} px {name} ({sh}x{sw}); resampled to the model's GSD that is "
                f"{n / factor:.2g} px, too thin to segment (--no-resample runs on the scene grid)"
            )


def _locked_run(
    cfg,
    notify,
    cluster,
    interrupts,
    scene,
    meta,
    names,
    overlap,
    bands,
    work,
    notice,
    model_sha,
    fp,
    started,
    t_start,
    t_start_wall,
) -> RunSummary:
    """The run itself, with the output lock held."""
    done, why = check_output(cfg.out, fp, cfg.overwrite)
    if done:
        notify(f"{cfg.out}: already complete for these inputs; nothing to do (--overwrite to redo)")
        return RunSummary(out=cfg.out, skipped=True)
    if why:
        notify(f"note: {cfg.out}: {why}; running again")

    # inputs are good: workers start while the plan and output files are prepared
    cluster.start(torch_free=not cluster.reuse and runs_without_torch(str(cfg.model), cfg.device, cfg.engine))
    plan = make_plan(scene, bands, work, cfg.tile, overlap, cfg.batch, cfg.block)
    class_ids = tuple(c.id for c in meta.classes)
    model = ModelTask(
        str(Path(cfg.model).resolve()),
        cfg.device,
        cfg.cluster.resolved_torch_threads(),
        class_ids,
        cfg.engine,
        cfg.amp,
    )
    crs_wkt = scene.geobox.crs.to_wkt()
    tags = {"GEOSEG_MODEL_SHA256": model_sha}
    seams = SeamMerger(*scene.shape)  # holds seam polygons only until their block rows are merged

    stage = stage_path(cfg.out, fp)
    clean_stale(cfg.out, keep=stage)  # staging folders of other inputs, half-committed leftovers
    try:
        stage.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{cfg.out}: cannot create its staging folder {stage.name}: {exc.strerror}"
        ) from None
    store: BlockStore | None = None
    try:
        for p in stage.iterdir():  # an interrupted run's partial outputs go; its finished blocks stay
            if p.name != BLOCKS_DIR:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        store = BlockStore(stage, fp, len(plan.blocks))
        saved = store.done()
        if saved:
            notify(f"resuming: {len(saved)} of {len(plan.blocks)} blocks were finished by an interrupted run")
        labelled = [0]  # output pixels with a class (not nodata)
        gpkg = stage / GPKG
        if meta.task == "buildings":
            from geoseg.building_outputs import BuildingOutputs  # scipy/scikit-image: building runs only

            building_id = next(i for i, n in names.items() if n == "building")
            sink: _Sink = BuildingOutputs(
                stage, gpkg, scene.geobox, scene.gsd_m, building_id, tags, plan.blocks
            )
        else:
            sink = _LandcoverSink(stage, gpkg, scene, meta, tags)
        bar = tqdm(total=len(plan.grid), unit="tile", desc=scene.path.name, disable=not cfg.progress)

        replayed = set(saved)

        def on_block(res: BlockResult) -> None:
            if res.index not in replayed:
                store.save(res)  # durable before it counts: a rerun replays it
            labelled[0] += int(np.count_nonzero(res.labels != NODATA))
            sink.add_block(plan.blocks[res.index], res)
            merged = seams.add(res.polygons)
            sink.add_polygons(merged)
            if merged and not cluster.model_in_this_process:
                release_free_memory()  # about once per block row: the blocks' results left the heap free

        try:
            with cluster.client() as client:
                timings = execute(
                    plan,
                    client,
                    model,
                    cfg.blend,
                    on_block,
                    on_tiles=bar.update,
                    with_confidence=sink.wants_confidence,
                    saved=saved,
                    load_saved=store.load,
                )
            bar.close()
            t_last_block = time.perf_counter()
            if not cluster.reuse:
                cluster.begin_close()  # workers stop while the outputs are finished
            sink.blocks_done()
            in_blocks_s = seams.merge_s  # spent in on_block, which counts as writing so far
            sink.add_polygons(seams.finish())
            timings.vectorize_s += seams.merge_s
            timings.write_s -= in_blocks_s
            t_write = time.perf_counter()
            sink.finish()
            timings.write_s += time.perf_counter() - t_write
        except BaseException:
            sink.abort()
            raise
        if labelled[0] == 0 and timings.tiles_predicted > 0:
            raise SceneError(
                f"{scene.path}: every output pixel came out nodata although {timings.tiles_predicted} "
                "tiles had valid pixels; not writing an empty result"
            )
        verify_geopackage(stage / GPKG, sink.polygons)
        store.remove()
        finished = datetime.now(timezone.utc)
        total = time.perf_counter() - t_start
        item = build_run_item(
            item_id=f"{scene.path.stem}-{meta.task}",
            scene_path=scene.path,
            scene_crs=crs_wkt,
            scene_bounds=tuple(scene.geobox.extent.boundingbox),
            scene_shape=scene.shape,
            scene_transform=scene.geobox.affine,
            assets=sink.assets(),
            parameters=cfg.model_dump(mode="json", exclude={"overwrite", "progress"})
            | {
                "bands": bands,
                "work_grid": None if work is None else [int(work.shape.y), int(work.shape.x)],
                "engines_used": sorted(timings.engines),
                "fingerprint": fp,
            },
            model={"path": str(cfg.model), "sha256": model_sha, "metadata": meta.model_dump(mode="json")},
            timing=asdict(timings, dict_factory=lambda kv: {k: v for k, v in kv if k not in TIMING_EXTRA})
            | {
                "total_s": total,
                "tiles": len(plan.grid),
                # to the first predicted batch (cluster, model load, first forward); after the last block
                "start_s": timings.first_batch_at - t_start_wall
                if timings.first_batch_at is not None
                else t_last_block - t_start,
                "finish_s": time.perf_counter() - t_last_block,
            },
            started=started,
            finished=finished,
        )
        item.properties["geoseg:fingerprint"] = fp
        item.properties[OUTPUTS_KEY] = output_records(stage)
        with interrupts.critical():
            write_item(item, stage / RUN_FILE)
            commit(stage, cfg.out)
    except InterruptedRun as exc:
        kept = len(store.done()) if store is not None and store.dir.is_dir() else 0
        raise InterruptedRun(
            exc.signum,
            f"{exc}; {kept} of {len(plan.blocks)} blocks are kept in {stage}: "
            "rerun the same command to resume",
        ) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return RunSummary(
        out=cfg.out,
        skipped=False,
        tiles=len(plan.grid),
        tiles_skipped=timings.tiles_skipped,
        polygons=sink.polygons,
        seconds=total,
        notice=notice,
    )


def verify_geopackage(path: Path, features: int) -> None:
    """The GeoPackage opens, passes SQLite's quick check, and its first layer holds ``features``."""
    import sqlite3

    import pyogrio

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            status = con.execute("PRAGMA quick_check").fetchone()[0]
        layers = [name for name, _ in pyogrio.list_layers(path) if name != "layer_styles"]
        n = pyogrio.read_info(path, layer=layers[0])["features"] if layers else -1
    except Exception as exc:  # noqa: BLE001 - any failure to read it back is a failed write
        raise OutputError(f"cannot write {path}: it does not read back ({exc})") from None
    if status != "ok" or n != features:
        raise OutputError(
            f"cannot write {path}: it reads back damaged ({status}, {n} of {features} features)"
        )


TIMING_EXTRA = ("first_batch_at", "engines")  # Timings fields that are not durations or counts


class _Sink:
    """Where a run's finished blocks and polygons go (one kind per model task; the building one is
    ``geoseg.building_outputs.BuildingOutputs``)."""

    wants_confidence = False
    polygons = 0

    def add_block(self, block: Window, res: BlockResult) -> None: ...
    def blocks_done(self) -> None: ...  # the last block is in (the seam polygons come next)
    def add_polygons(self, polys: list) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...
    def assets(self) -> dict: ...


class _LandcoverSink(_Sink):
    """landcover.tif (class ids, colour table) + the ``landcover`` layer with every class's polygons."""

    def __init__(self, stage: Path, gpkg: Path, scene: Scene, meta: CheckpointMeta, tags: dict) -> None:
        h, w = scene.shape
        self.gpkg = gpkg
        self.meta = meta
        self.crs_wkt = scene.geobox.crs.to_wkt()
        self.names = {c.id: c.name for c in meta.classes}
        self.pending: list = []  # final polygons not yet written (memory holds these and the seam ones)
        self.raster_done: Future[None] | None = None
        self.writer = BlockCOGWriter(
            stage / LANDCOVER_TIF,
            crs=self.crs_wkt,
            transform=scene.geobox.affine,
            width=w,
            height=h,
            dtype="uint8",
            nodata=NODATA,
            colormap={c.id: c.rgb for c in meta.classes},
            class_names=self.names,
            tags=tags,
        )

    def add_block(self, block: Window, res: BlockResult) -> None:
        self.writer.write(block.row_off, block.col_off, res.labels)
        self.add_polygons(res.polygons.interior)

    def add_polygons(self, polys: list) -> None:
        self.pending.extend(polys)
        if len(self.pending) >= POLYGONS_PER_WRITE:
            self._write_pending()

    def blocks_done(self) -> None:
        """Build the COG (GDAL, outside the GIL) while the seam polygons are merged and written."""
        self.raster_done = ThreadPoolExecutor(1, thread_name_prefix="geoseg-cog").submit(self.writer.close)

    def _write_pending(self) -> None:
        """Append the final polygons held so far to the layer (a few thousand at a time: one GeoPackage
        transaction per append, so appends of a single block's polygons cost twice as much)."""
        if self.pending or self.polygons == 0:
            frame = polygons_to_frame(self.pending, self.names, self.crs_wkt)
            write_layer(frame, self.gpkg, "landcover", append=self.polygons > 0)
            self.polygons += len(frame)
        self.pending = []

    def finish(self) -> None:
        self._write_pending()
        if self.raster_done is not None:
            self.raster_done.result()
        self.writer.close()  # no-op once closed
        qml = categorized_polygon_qml("class_id", [(c.id, c.name, c.color) for c in self.meta.classes])
        write_layer_styles(self.gpkg, "landcover", qml, "landcover")

    def abort(self) -> None:
        if self.raster_done is not None:
            wait([self.raster_done])  # the staging folder, COG included, is removed by the caller
        self.writer.abort()

    def assets(self) -> dict:
        return {
            "landcover": (f"./{LANDCOVER_TIF}", COG_MEDIA, ["data", "classification"], "Land-cover classes"),
            "vectors": (f"./{GPKG}", GPKG_MEDIA, ["data"], "Land-cover polygons"),
        }
