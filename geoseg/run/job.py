"""``geoseg run``: validate inputs, run the Dask pipeline, write COG + GeoPackage + STAC run record.

One run has one or more *products*: a model (checkpoint or baseline) and the outputs it writes (the
land-cover or building sink). Every tile is read once for all of them (``geoseg.run.multirun`` holds the
worker tasks of several models); each product's blocks go through its own minimum-mapping-unit sieve,
seam merger and sink, and one ``run.json`` describes the run. Outputs are written into a staging folder
named after the run's fingerprint, finished blocks are saved there durably (a killed run resumes), the
outputs are verified, and the folder is renamed into place under an output lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox
from tqdm import tqdm

from geoseg.config import RunConfig, check_overlap
from geoseg.errors import InterruptedRun, ModelMismatchError, OutputError, SceneError
from geoseg.inference.modelspec import BaselineTask, ResolvedModel, is_baseline, resolve_model
from geoseg.inference.openvino import runs_without_torch
from geoseg.inference.scene_checks import work_grid
from geoseg.inference.task import ModelTask
from geoseg.io.dates import acquisition_date
from geoseg.io.raster import Scene, crs_of, open_scene
from geoseg.io.staging import (
    OUTPUTS_KEY,
    RUN_FILE,
    check_out_path,
    check_output,
    clean_stale,
    commit,
    output_records,
    stage_path,
)
from geoseg.models.meta import CheckpointMeta
from geoseg.outputs.classmeta import add_class_extensions
from geoseg.outputs.landcover import CONFIDENCE_TIF, GPKG, LandcoverSink
from geoseg.outputs.mmu import BlockSiever, mmu_pixels, sieve_core
from geoseg.outputs.sink import NODATA, BlockResult, Sink
from geoseg.outputs.stac import build_run_item, write_item
from geoseg.outputs.vectorize import SeamMerger, vectorize_window
from geoseg.run.allocator import release_free_memory
from geoseg.run.cluster import ClusterStart
from geoseg.run.graph import Plan, Timings, execute, make_plan, predict_batch, stitch_block
from geoseg.run.locking import output_lock
from geoseg.run.multirun import MultiBlock, MultiTask, combined_stats, predict_multi, stitch_multi
from geoseg.run.preflight import (
    Interrupts,
    check_device,
    check_out_writable,
    check_scene_file,
    check_scheduler,
)
from geoseg.run.resume import BLOCKS_DIR, BlockStore
from tiles import Window

log = logging.getLogger("geoseg")

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


def run_models(cfg: RunConfig) -> list[str | Path]:
    """The models of a run: ``--model`` repeated (``cfg.models``), else the one ``cfg.model``."""
    return list(cfg.models) or [cfg.model]


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
    inputs = [cfg.scene, *(Path(m) for m in run_models(cfg) if not is_baseline(m))]
    check_out_path(cfg.out, inputs)
    check_out_writable(cfg.out)


@dataclass
class _Prepared:
    """A run's checked inputs: what the locked part needs."""

    scene: Scene
    models: list[str | Path]
    resolved: list[ResolvedModel]
    bands: list[int]
    band_pos: tuple[tuple[int, ...], ...]  # each model's bands among ``bands``
    overlap: int
    work: GeoBox | None
    notice: str | None
    acquired: date | None
    date_source: str | None
    model_sha: str
    fp: str
    started: datetime
    t_start: float
    t_start_wall: float

    @property
    def tasks(self) -> str:
        return "-".join(r.meta.task for r in self.resolved)


def _run_scene(
    cfg: RunConfig, notify, cluster: ClusterStart, wait: bool, interrupts: Interrupts
) -> RunSummary:
    prep = _prepare(cfg, notify)
    with output_lock(cfg.out, wait=wait, notify=notify):
        return _locked_run(cfg, prep, notify, cluster, interrupts)


def _prepare(cfg: RunConfig, notify) -> _Prepared:
    """Open the scene and check every model against it (one-line errors, nothing written yet)."""
    started = datetime.now(timezone.utc)
    t_start, t_start_wall = time.perf_counter(), time.time()
    scene = open_scene(cfg.scene)
    models = run_models(cfg)
    resolved = [resolve_model(cfg, scene, m) for m in models]  # checkpoints or baselines, bands matched
    tasks = [r.meta.task for r in resolved]
    if len(set(tasks)) != len(tasks):
        raise ModelMismatchError(
            f"{', '.join(map(str, models))}: one run writes one product per task ({', '.join(tasks)}); "
            "run models of the same task separately"
        )
    overlap = max(r.meta.overlap for r in resolved) if cfg.overlap is None else cfg.overlap
    try:
        check_overlap(overlap, cfg.tile)
    except ValueError as exc:
        raise ModelMismatchError(f"{models[0]}: {exc}; choose --overlap") from None
    # baselines have no GSD of their own: they run on the grid of the other models
    grids = [work_grid(scene, r.meta, cfg.resample) for r in resolved if not r.baseline] or [(None, None)]
    work, notice = grids[0]
    if not all(_same_grid(work, g) for g, _ in grids[1:]):
        raise ModelMismatchError(
            f"{', '.join(map(str, models))}: the models run at different resolutions on "
            f"{scene.path.name}; run them separately"
        )
    check_work_shape(scene, work)
    if notice:
        notify(f"note: {notice}")
    acquired, date_source = acquisition_date(cfg.scene, cfg.date, cfg.date_pattern)
    if acquired is None:
        notify(
            f"note: {cfg.scene.name}: no acquisition date in its metadata or file name; run.json's STAC "
            "datetime is null (start/end_datetime = processing time) and geoseg change will refuse it; "
            "pass --date YYYY-MM-DD"
        )
    bands = list(dict.fromkeys(b for r in resolved for b in r.bands))  # the union, in first-use order
    band_pos = tuple(tuple(bands.index(b) for b in r.bands) for r in resolved)
    model_sha = "+".join(r.sha256 for r in resolved)
    return _Prepared(
        scene, models, resolved, bands, band_pos, overlap, work, notice, acquired, date_source, model_sha,
        fingerprint(cfg, model_sha), started, t_start, t_start_wall,
    )  # fmt: skip


def _same_grid(a: GeoBox | None, b: GeoBox | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return tuple(a.affine) == tuple(b.affine) and tuple(a.shape) == tuple(b.shape)


def check_work_shape(scene: Scene, work: GeoBox | None) -> None:
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


@dataclass
class _Product:
    """One model's outputs in a run: its sink, seam merger and MMU sieve."""

    sink: Sink
    seams: SeamMerger
    siever: BlockSiever | None
    held: dict[int, BlockResult] = field(default_factory=dict)  # blocks waiting for their MMU halo


def _worker_task(cfg: RunConfig, prep: _Prepared) -> ModelTask | MultiTask:
    """What the workers run: the one model's task, or all models' on one read of each tile."""
    tasks = [r.task(cfg, prep.scene, m) for r, m in zip(prep.resolved, prep.models, strict=True)]
    if prep.work is not None:  # a baseline on the models' coarser grid sees that grid's GSD
        gsd = prep.scene.gsd_m * prep.scene.shape[1] / int(prep.work.shape.x)
        tasks = [replace(t, gsd_m=gsd) if isinstance(t, BaselineTask) else t for t in tasks]
    return tasks[0] if len(tasks) == 1 else MultiTask(tuple(tasks), prep.band_pos)


def _make_sink(
    cfg: RunConfig, r: ResolvedModel, stage: Path, scene: Scene, plan: Plan, several: bool
) -> Sink:
    tags = {"GEOSEG_MODEL_SHA256": r.sha256}
    if r.meta.task == "buildings":
        from geoseg.outputs.buildings import BuildingOutputs  # scipy/scikit-image: building runs only

        building_id = next(c.id for c in r.meta.classes if c.name == "building")
        sink: Sink = BuildingOutputs(
            stage, stage / GPKG, scene.geobox, scene.gsd_m, building_id, tags, plan.blocks
        )
        if cfg.confidence:  # beside land cover's, the building probabilities get their own name
            sink.keep_confidence = stage / (f"buildings_{CONFIDENCE_TIF}" if several else CONFIDENCE_TIF)
        return sink
    return LandcoverSink(stage, stage / GPKG, scene, r.meta, tags, cfg.confidence)


def _open_stage(cfg: RunConfig, fp: str) -> Path:
    """The run's staging folder: an interrupted run's partial outputs go, its finished blocks stay."""
    stage = stage_path(cfg.out, fp)
    clean_stale(cfg.out, keep=stage)  # staging folders of other inputs, half-committed leftovers
    try:
        stage.mkdir(parents=True, exist_ok=True)
        for p in stage.iterdir():
            if p.name != BLOCKS_DIR:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    except OSError as exc:
        raise OutputError(
            f"{cfg.out}: cannot prepare its staging folder {stage.name}: {exc.strerror}"
        ) from None
    return stage


def _locked_run(
    cfg: RunConfig, prep: _Prepared, notify, cluster: ClusterStart, interrupts: Interrupts
) -> RunSummary:
    """The run itself, with the output lock held."""
    done, why = check_output(cfg.out, prep.fp, cfg.overwrite)
    if done:
        notify(f"{cfg.out}: already complete for these inputs; nothing to do (--overwrite to redo)")
        return RunSummary(out=cfg.out, skipped=True)
    if why:
        notify(f"note: {cfg.out}: {why}; running again")

    # inputs are good: workers start while the plan and output files are prepared
    torch_free = all(
        r.baseline or runs_without_torch(str(m), cfg.device, cfg.engine)
        for m, r in zip(prep.models, prep.resolved, strict=True)
    )
    cluster.start(torch_free=not cluster.reuse and torch_free)
    scene = prep.scene
    plan = make_plan(scene, prep.bands, prep.work, cfg.tile, prep.overlap, cfg.batch, cfg.block)
    task = _worker_task(cfg, prep)
    several = isinstance(task, MultiTask)
    mmu_px = mmu_pixels(cfg.mmu_m2, scene.gsd_m)
    stage = _open_stage(cfg, prep.fp)
    products: list[_Product] = []
    store: BlockStore | None = None
    try:
        store = BlockStore(stage, prep.fp, len(plan.blocks))
        for r in prep.resolved:
            sink = _make_sink(cfg, r, stage, scene, plan, several)
            siever = BlockSiever(plan.blocks, *scene.shape, mmu_px) if mmu_px > 1 else None
            products.append(_Product(sink, SeamMerger(*scene.shape), siever))
        saved = store.done()
        if saved:
            notify(f"resuming: {len(saved)} of {len(plan.blocks)} blocks were finished by an interrupted run")
        labelled = [0]  # output pixels with a class (not nodata)
        mmu_s = [0.0]
        replayed = set(saved)
        bar = tqdm(total=len(plan.grid), unit="tile", desc=scene.path.name, disable=not cfg.progress)

        def finished_block(product: _Product, res: BlockResult) -> bool:
            product.sink.add_block(plan.blocks[res.index], res)
            merged = product.seams.add(res.polygons)
            product.sink.add_polygons(merged)
            return bool(merged)

        def on_block(res: BlockResult | MultiBlock) -> None:
            parts = res.parts if isinstance(res, MultiBlock) else (res,)
            if res.index not in replayed:
                store.save(parts)  # durable before it counts: a rerun replays it
            merged_any = False
            for product, part in zip(products, parts, strict=True):
                labelled[0] += int(np.count_nonzero(part.labels != NODATA))
                if product.siever is None:
                    merged_any |= finished_block(product, part)
                    continue
                product.held[part.index] = part
                for i in product.siever.add(part.index, part.labels):
                    mosaic, core = product.siever.window_of(i)
                    product.siever.done(i)
                    sieved = sieved_block(product.held.pop(i), mosaic, core, mmu_px, plan.blocks[i], scene)
                    mmu_s[0] += sieved.vectorize_s
                    merged_any |= finished_block(product, sieved)
            if merged_any and not cluster.model_in_this_process:
                release_free_memory()  # about once per block row: the blocks' results left the heap free

        def load_saved(b: int) -> BlockResult | MultiBlock:
            parts = store.load(b)
            if not several:
                return parts[0]
            return MultiBlock(b, parts, combined_stats(parts), 0.0, 0.0)

        try:
            with cluster.client() as client:
                timings = execute(
                    plan,
                    client,
                    task,
                    cfg.blend,
                    on_block,
                    on_tiles=bar.update,
                    with_confidence=any(p.sink.wants_confidence for p in products),
                    saved=saved,
                    load_saved=load_saved,
                    predict=predict_multi if several else predict_batch,
                    stitch=stitch_multi if several else stitch_block,
                )
            bar.close()
            t_last_block = time.perf_counter()
            if not cluster.reuse:
                cluster.begin_close()  # workers stop while the outputs are finished
            for product in products:
                product.sink.blocks_done()
            in_blocks_s = sum(p.seams.merge_s for p in products)  # counted as writing so far
            for product in products:
                product.sink.add_polygons(product.seams.finish())
            timings.vectorize_s += sum(p.seams.merge_s for p in products)
            timings.write_s -= in_blocks_s
            t_write = time.perf_counter()
            for product in products:
                product.sink.finish()
            timings.write_s += time.perf_counter() - t_write
        except BaseException:
            for product in products:
                product.sink.abort()
            raise
        if labelled[0] == 0 and timings.tiles_predicted > 0:
            raise SceneError(
                f"{scene.path}: every output pixel came out nodata although {timings.tiles_predicted} "
                "tiles had valid pixels; not writing an empty result"
            )
        verify_geopackage(stage / GPKG, {p.sink.layer: p.sink.polygons for p in products})
        store.remove()
        item = _run_item(cfg, prep, plan, [p.sink for p in products], timings, t_last_block, mmu_px, mmu_s[0])
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
        polygons=sum(p.sink.polygons for p in products),
        seconds=item.properties["geoseg:timing"]["total_s"],
        notice=prep.notice,
    )


def _run_item(
    cfg: RunConfig,
    prep: _Prepared,
    plan: Plan,
    sinks: list[Sink],
    timings: Timings,
    t_last_block: float,
    mmu_px: float,
    mmu_s: float,
):
    """The run's STAC Item (assets of every product, parameters, models, timing)."""
    scene, resolved = prep.scene, prep.resolved
    assets: dict = {}
    for sink in sinks:
        for key, value in sink.assets().items():
            if key in assets:  # the shared GeoPackage
                value = (*value[:3], f"{assets[key][3]}; {value[3]}")
            assets[key] = value
    parameters = cfg.model_dump(mode="json", exclude={"overwrite", "progress"}) | {
        "bands": prep.bands,
        "work_grid": None if prep.work is None else [int(prep.work.shape.y), int(prep.work.shape.x)],
        **timings.inference_record(),
        "fingerprint": prep.fp,
        "mmu_pixels": mmu_px,
    }
    model: dict[str, Any] = {"path": str(prep.models[0]), "sha256": prep.model_sha}
    if len(resolved) == 1:
        model["metadata"] = resolved[0].meta.model_dump(mode="json")
    else:
        parameters |= {
            "models": [str(m) for m in prep.models],
            "bands_per_model": [r.bands for r in resolved],
            "overlap_used": prep.overlap,
        }
        model["path"] = " + ".join(map(str, prep.models))
        model["models"] = [
            {"path": str(m), "sha256": r.sha256, "metadata": r.meta.model_dump(mode="json")}
            for m, r in zip(prep.models, resolved, strict=True)
        ]
    total = time.perf_counter() - prep.t_start
    item = build_run_item(
        item_id=f"{scene.path.stem}-{prep.acquired or 'undated'}-{prep.tasks}-{prep.fp[:8]}",
        scene_path=scene.path,
        scene_crs=crs_of(scene.geobox).to_wkt(),
        scene_bounds=tuple(scene.geobox.extent.boundingbox),
        scene_shape=scene.shape,
        scene_transform=scene.geobox.affine,
        assets=assets,
        parameters=parameters,
        model=model,
        timing=timings.durations()
        | {
            "total_s": total,
            "tiles": len(plan.grid),
            # to the first predicted batch (cluster, model load, first forward); after the last block
            "start_s": timings.first_batch_at - prep.t_start_wall
            if timings.first_batch_at is not None
            else t_last_block - prep.t_start,
            "finish_s": time.perf_counter() - t_last_block,
            "mmu_s": mmu_s,
        },
        started=prep.started,
        finished=datetime.now(timezone.utc),
        out_dir=cfg.out.resolve(),
        acquired=prep.acquired,
    )
    item.properties["geoseg:fingerprint"] = prep.fp
    item.properties["geoseg:date_source"] = prep.date_source
    for r in resolved:
        _describe_assets(item, r.meta, scene.gsd_m)
    return item


def verify_geopackage(path: Path, features: dict[str, int]) -> None:
    """The GeoPackage opens, passes SQLite's quick check, and each layer holds its number of features."""
    import sqlite3

    import pyogrio

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            status = con.execute("PRAGMA quick_check").fetchone()[0]
        found = {layer: pyogrio.read_info(path, layer=layer)["features"] for layer in features}
    except Exception as exc:  # noqa: BLE001 - any failure to read it back is a failed write
        raise OutputError(f"cannot write {path}: it does not read back ({exc})") from None
    if status != "ok" or found != features:
        raise OutputError(f"cannot write {path}: it reads back damaged ({status}, {found} of {features})")


def sieved_block(
    res: BlockResult, mosaic, core: Window, mmu_px: float, block: Window, scene: Scene
) -> BlockResult:
    """``res`` with the minimum mapping unit applied (labels from its haloed window) and re-vectorized."""
    if not np.any(res.labels != NODATA):  # all nodata (e.g. outside a sparse scene's data): nothing changes
        return replace(res, vectorize_s=0.0)
    t0 = time.perf_counter()
    labels = sieve_core(mosaic, core, mmu_px, NODATA)
    polys = vectorize_window(labels, block, scene.geobox.affine, scene.shape, NODATA)
    res = replace(res, labels=labels, polygons=polys)
    res.vectorize_s = time.perf_counter() - t0  # the client's time for the MMU (counted in geoseg:timing)
    return res


def _describe_assets(item, meta: CheckpointMeta, gsd_m: float) -> None:
    """STAC classification + raster band info of the run's rasters."""
    classes = [(c.id, c.name, c.color) for c in meta.classes]
    if meta.task != "buildings" and "landcover" in item.assets:
        add_class_extensions(item, "landcover", classes, "uint8", NODATA, gsd_m)
    if meta.task == "buildings" and "buildings" in item.assets:
        add_class_extensions(item, "buildings", None, "uint32", 0, gsd_m)
    for key in ("confidence", "buildings_confidence"):
        if key in item.assets:
            add_class_extensions(item, key, None, "uint8", None, gsd_m)
