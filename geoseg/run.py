"""``geoseg run``: validate inputs, run the Dask pipeline, write COG + GeoPackage + STAC run record."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from geoseg.allocator import release_free_memory
from geoseg.classmeta import add_class_extensions, write_category_sidecar
from geoseg.cluster import ClusterStart
from geoseg.compat import work_grid
from geoseg.config import RunConfig, check_overlap
from geoseg.dates import acquisition_date
from geoseg.errors import ModelMismatchError
from geoseg.io.cog import BlockCOGWriter
from geoseg.io.raster import Scene, open_scene
from geoseg.io.vector import write_layer, write_layer_styles
from geoseg.mmu import BlockSiever, mmu_pixels, sieve_core
from geoseg.models.meta import CheckpointMeta
from geoseg.modelspec import resolve_model
from geoseg.ov_predictor import runs_without_torch
from geoseg.pipeline import NODATA, BlockResult, execute, make_plan
from geoseg.report import COG_MEDIA, GPKG_MEDIA, build_run_item, write_item
from geoseg.rundir import RUN_FILE, check_output, staging_dir
from geoseg.styles import categorized_polygon_qml
from geoseg.vectorize import SeamMerger, polygons_to_frame, vectorize_block
from tiles import Window

log = logging.getLogger("geoseg")

LANDCOVER_TIF = "landcover.tif"
CONFIDENCE_TIF = "confidence.tif"
# final polygons per GeoPackage append (one transaction each). 32,000 cut the writes of the 8192² scene's
# 68,481 polygons by 16 % offline, but held 70-90 MB more in the client at 16384² for no wall-time gain
# there (148.9-152.4 s with 8,000, 149.8 s with 32,000)
POLYGONS_PER_WRITE = 8000
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
    for key in ("models", "band_names"):  # unset, they leave the fingerprints of earlier runs as they were
        if not params.get(key):
            params.pop(key, None)
    blob = json.dumps(
        {
            "scene": [str(cfg.scene.resolve()), st.st_size, st.st_mtime_ns],
            "model": model_sha,
            "params": params,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def run_scene(cfg: RunConfig, notify=print, cluster: ClusterStart | None = None) -> RunSummary:
    """Run one scene end to end; all validation happens before any output is created (or a cluster
    started).

    ``cluster``: a cluster to share between scenes (started on first use); by default one is started
    here for ``cfg.cluster`` once the inputs are checked, and closed again.
    """
    if len(cfg.models) > 1:  # one read, several products
        from geoseg.multirun import run_models

        return run_models(cfg, notify, cluster)
    if cfg.models:
        cfg = cfg.model_copy(update={"model": cfg.models[0], "models": []})
    if cluster is not None:
        return _run_scene(cfg, notify, cluster)
    with ClusterStart(cfg.cluster) as own:
        return _run_scene(cfg, notify, own)


def _run_scene(cfg: RunConfig, notify, cluster: ClusterStart) -> RunSummary:
    started = datetime.now(timezone.utc)
    t_start, t_start_wall = time.perf_counter(), time.time()
    scene = open_scene(cfg.scene)
    resolved = resolve_model(cfg, scene)  # a checkpoint or a baseline, its bands matched to the scene
    meta, bands = resolved.meta, resolved.bands
    names = {c.id: c.name for c in meta.classes}
    if meta.task == "buildings" and "building" not in names.values():
        raise ModelMismatchError(f"{cfg.model}: a buildings model needs a class named 'building'")
    overlap = meta.overlap if cfg.overlap is None else cfg.overlap
    try:
        check_overlap(overlap, cfg.tile)
    except ValueError as exc:
        raise ModelMismatchError(f"{cfg.model}: {exc}; choose --overlap") from None
    work, notice = work_grid(scene, meta, cfg.resample)
    if notice:
        notify(f"note: {notice}")
    acquired, date_source = acquisition_date(cfg.scene, cfg.date, cfg.date_pattern)
    if acquired is None:
        notify(
            f"note: {cfg.scene.name}: no acquisition date in its metadata or file name; run.json's STAC "
            "datetime is null (start/end_datetime = processing time) and geoseg change will refuse it; "
            "pass --date YYYY-MM-DD"
        )
    model_sha = resolved.sha256
    fp = fingerprint(cfg, model_sha)
    if check_output(cfg.out, fp, cfg.overwrite):
        notify(f"{cfg.out}: already complete for these inputs; nothing to do (--overwrite to redo)")
        return RunSummary(out=cfg.out, skipped=True)

    # inputs are good: workers start while the plan and output files are prepared
    cluster.start(
        torch_free=not cluster.reuse
        and (resolved.baseline or runs_without_torch(str(cfg.model), cfg.device, cfg.engine))
    )
    plan = make_plan(scene, bands, work, cfg.tile, overlap, cfg.batch, cfg.block)
    model = resolved.task(cfg, scene)
    crs_wkt = scene.geobox.crs.to_wkt()
    tags = {"GEOSEG_MODEL_SHA256": model_sha}
    seams = SeamMerger(*scene.shape)  # holds seam polygons only until their block rows are merged
    mmu_px = mmu_pixels(cfg.mmu_m2, scene.gsd_m)
    siever = BlockSiever(plan.blocks, *scene.shape, mmu_px) if mmu_px > 1 else None

    with staging_dir(cfg.out) as stage:
        gpkg = stage / GPKG
        if meta.task == "buildings":
            from geoseg.building_outputs import BuildingOutputs  # scipy/scikit-image: building runs only

            building_id = next(i for i, n in names.items() if n == "building")
            sink: _Sink = BuildingOutputs(
                stage, gpkg, scene.geobox, scene.gsd_m, building_id, tags, plan.blocks
            )
            if cfg.confidence:
                sink.keep_confidence = stage / CONFIDENCE_TIF
        else:
            sink = _LandcoverSink(stage, gpkg, scene, meta, tags, cfg.confidence)
        bar = tqdm(total=len(plan.grid), unit="tile", desc=scene.path.name, disable=not cfg.progress)

        def finished_block(res: BlockResult) -> None:
            sink.add_block(plan.blocks[res.index], res)
            merged = seams.add(res.polygons)
            sink.add_polygons(merged)
            if merged and not cluster.model_in_this_process:
                release_free_memory()  # about once per block row: the blocks' results left the heap free

        held: dict[int, BlockResult] = {}  # blocks waiting for their MMU halo
        mmu_s = [0.0]

        def on_block(res: BlockResult) -> None:
            if siever is None:
                return finished_block(res)
            held[res.index] = res
            for i in siever.add(res.index, res.labels):
                mosaic, core = siever.window_of(i)
                siever.done(i)
                done = sieved_block(held.pop(i), mosaic, core, mmu_px, plan.blocks[i], scene)
                mmu_s[0] += done.vectorize_s
                finished_block(done)

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
        finished = datetime.now(timezone.utc)
        total = time.perf_counter() - t_start
        item = build_run_item(
            item_id=f"{scene.path.stem}-{acquired or 'undated'}-{meta.task}-{fp[:8]}",
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
                **timings.inference_record(),
                "fingerprint": fp,
                "mmu_pixels": mmu_px,
            },
            model={"path": str(cfg.model), "sha256": model_sha, "metadata": meta.model_dump(mode="json")},
            timing=timings.durations()
            | {
                "total_s": total,
                "tiles": len(plan.grid),
                # to the first predicted batch (cluster, model load, first forward); after the last block
                "start_s": timings.first_batch_at - t_start_wall
                if timings.first_batch_at is not None
                else t_last_block - t_start,
                "finish_s": time.perf_counter() - t_last_block,
                "mmu_s": mmu_s[0],
            },
            started=started,
            finished=finished,
            out_dir=cfg.out.resolve(),
            acquired=acquired,
        )
        item.properties["geoseg:fingerprint"] = fp
        item.properties["geoseg:date_source"] = date_source
        _describe_assets(item, meta, scene.gsd_m)
        write_item(item, stage / RUN_FILE)
    return RunSummary(
        out=cfg.out,
        skipped=False,
        tiles=len(plan.grid),
        tiles_skipped=timings.tiles_skipped,
        polygons=sink.polygons,
        seconds=total,
        notice=notice,
    )




def sieved_block(
    res: BlockResult, mosaic, core: Window, mmu_px: float, block: Window, scene: Scene
) -> BlockResult:
    """``res`` with the minimum mapping unit applied (labels from its haloed window) and re-vectorized."""
    t0 = time.perf_counter()
    labels = sieve_core(mosaic, core, mmu_px, NODATA)
    sh, sw = scene.shape
    polys = vectorize_block(
        labels,
        block.transform(scene.geobox.affine),
        nodata=NODATA,
        block_row_off=block.row_off,
        block_col_off=block.col_off,
        scene_height=sh,
        scene_width=sw,
    )
    res.labels, res.polygons = labels, polys
    res.vectorize_s = time.perf_counter() - t0  # the client's time for the MMU (counted in geoseg:timing)
    return res


def _describe_assets(item, meta: CheckpointMeta, gsd_m: float) -> None:
    """STAC classification + raster band info of the run's rasters."""
    classes = [(c.id, c.name, c.color) for c in meta.classes]
    if "landcover" in item.assets:
        add_class_extensions(item, "landcover", classes, "uint8", NODATA, gsd_m)
    if "buildings" in item.assets:
        add_class_extensions(item, "buildings", None, "uint32", 0, gsd_m)
    if "confidence" in item.assets:
        add_class_extensions(item, "confidence", None, "uint8", None, gsd_m)


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

    def __init__(
        self,
        stage: Path,
        gpkg: Path,
        scene: Scene,
        meta: CheckpointMeta,
        tags: dict,
        confidence: bool = False,
    ) -> None:
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
        self.wants_confidence = confidence
        self.conf_writer = (
            BlockCOGWriter(
                stage / CONFIDENCE_TIF,
                crs=self.crs_wkt,
                transform=scene.geobox.affine,
                width=w,
                height=h,
                dtype="uint8",
                nodata=None,
                tags=tags,
                overview_resampling="average",
                band_description="confidence (winning-class probability x 255)",
            )
            if confidence
            else None
        )

    def add_block(self, block: Window, res: BlockResult) -> None:
        self.writer.write(block.row_off, block.col_off, res.labels)
        if self.conf_writer is not None and res.confidence is not None:
            self.conf_writer.write(block.row_off, block.col_off, res.confidence)
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
        if self.conf_writer is not None:
            self.conf_writer.close()
        write_category_sidecar(self.writer.path, [(c.id, c.name, c.color) for c in self.meta.classes])
        qml = categorized_polygon_qml("class_id", [(c.id, c.name, c.color) for c in self.meta.classes])
        write_layer_styles(self.gpkg, "landcover", qml, "landcover")

    def abort(self) -> None:
        if self.raster_done is not None:
            wait([self.raster_done])  # the staging folder, COG included, is removed by the caller
        self.writer.abort()
        if self.conf_writer is not None:
            self.conf_writer.abort()

    def assets(self) -> dict:
        out = {
            "landcover": (f"./{LANDCOVER_TIF}", COG_MEDIA, ["data", "classification"], "Land-cover classes"),
            "vectors": (f"./{GPKG}", GPKG_MEDIA, ["data"], "Land-cover polygons"),
        }
        if self.conf_writer is not None:
            out["confidence"] = (
                f"./{CONFIDENCE_TIF}",
                COG_MEDIA,
                ["data"],
                "Winning-class probability x 255",
            )
        return out
