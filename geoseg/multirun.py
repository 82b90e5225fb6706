"""One read, several products: ``geoseg run --model landcover_rgb.pt --model buildings_rgb.pt``.

Each batch task reads its tiles once (the union of the models' bands) and runs every model on them; each
block task stitches every model's probabilities into its own labels and polygons. The client writes
each model's outputs as a single-model run does (``landcover.tif``, ``buildings.tif``, their layers in
one ``geoseg.gpkg``) and one ``run.json`` lists all models. The models must run on the same grid (same
GSD class after ``work_grid``) and produce different products (one land-cover and one buildings model);
tiles use the largest recorded overlap of the models unless ``--overlap`` is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import numpy as np
from tqdm import tqdm

from geoseg.allocator import release_free_memory
from geoseg.cluster import ClusterStart
from geoseg.compat import work_grid
from geoseg.config import RunConfig, check_overlap
from geoseg.errors import ModelMismatchError
from geoseg.io.raster import open_scene, read_window
from geoseg.modelspec import BaselineTask, ResolvedModel, resolve_model
from geoseg.offheap import offheap_copy
from geoseg.ov_predictor import runs_without_torch
from geoseg.pipeline import (
    BatchResult,
    BatchStats,
    BlockResult,
    ModelTask,
    execute,
    make_plan,
    model_predictor,
    stitch_block,
)
from geoseg.report import build_run_item, write_item
from geoseg.rundir import RUN_FILE, check_output, staging_dir
from geoseg.vectorize import SeamMerger


@dataclass(frozen=True)
class MultiTask:
    """The models of one run and, for each, the positions of its bands among the bands read."""

    tasks: tuple[ModelTask, ...]
    band_pos: tuple[tuple[int, ...], ...]

    @property
    def class_ids(self) -> tuple[tuple[int, ...], ...]:
        return tuple(t.class_ids for t in self.tasks)


@dataclass
class MultiBatch:
    parts: tuple[BatchResult, ...]  # one per model


@dataclass
class MultiBlock:
    """One block's results of every model (``batches``: combined statistics, as ``BlockResult``'s)."""

    index: int
    parts: tuple[BlockResult, ...]
    batches: tuple[BatchStats, ...]
    stitch_s: float
    vectorize_s: float


def predict_multi(scene_path: str, windows, bands: list[int], work, model: MultiTask) -> MultiBatch:
    """Worker task: read the tiles once, then run every model on its bands of them."""
    t0 = time.perf_counter()
    reads = [(i, *read_window(scene_path, w, bands, work)) for i, w in windows]
    kept = [(i, data, valid) for i, data, valid in reads if valid.any()]
    read_s = time.perf_counter() - t0
    valid = {i: offheap_copy(v) for i, _, v in reads}
    parts = []
    for m, (task, pos) in enumerate(zip(model.tasks, model.band_pos, strict=True)):
        t1 = time.perf_counter()
        probs: dict[int, np.ndarray | None] = {i: None for i, _ in windows}
        model_s, engine = 0.0, ""
        if kept:
            predictor = model_predictor(task)
            engine = predictor.engine.name
            x = np.stack([k[1][list(pos)] for k in kept])
            out, model_s = predictor.predict_timed(x, np.stack([k[2] for k in kept]))
            for (i, _, _), p in zip(kept, out, strict=True):
                probs[i] = p
        stats = BatchStats(
            read_s if m == 0 else 0.0,
            model_s,
            time.perf_counter() - t1,
            len(windows),
            len(kept),
            time.time(),
            engine,
        )
        parts.append(BatchResult(probs, valid, stats))
    return MultiBatch(tuple(parts))


def stitch_multi(
    index, plan_block, work_window, grid, blend, scene, work, class_ids, with_confidence, *batches
) -> MultiBlock:
    """Worker task: ``stitch_block`` for every model of the batches."""
    parts = tuple(
        stitch_block(
            index, plan_block, work_window, grid, blend, scene, work, ids, with_confidence,
            *[b.parts[m] for b in batches],
        )
        for m, ids in enumerate(class_ids)
    )  # fmt: skip
    stats = []
    for b in batches:
        s = [p.stats for p in b.parts]
        stats.append(
            BatchStats(
                sum(x.read_s for x in s),
                sum(x.predict_s for x in s),
                sum(x.task_predict_s for x in s),
                s[0].tiles,
                s[0].predicted,
                max(x.finished_at for x in s),
                ",".join(sorted({x.engine for x in s if x.engine})),
            )
        )
    return MultiBlock(
        index,
        parts,
        tuple(stats),
        sum(p.stitch_s for p in parts),
        sum(p.vectorize_s for p in parts),
    )


def _same_grid(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return tuple(a.affine) == tuple(b.affine) and tuple(a.shape) == tuple(b.shape)


def run_models(cfg: RunConfig, notify=print, cluster: ClusterStart | None = None):
    """Run every model of ``cfg.models`` on ``cfg.scene`` from one read of each tile (see the module)."""
    if cluster is not None:
        return _run_models(cfg, notify, cluster)
    with ClusterStart(cfg.cluster) as own:
        return _run_models(cfg, notify, own)


def _run_models(cfg: RunConfig, notify, cluster: ClusterStart):
    from geoseg.run import GPKG, RunSummary, _LandcoverSink, fingerprint

    models = list(cfg.models)

    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    scene = open_scene(cfg.scene)
    resolved: list[ResolvedModel] = [resolve_model(cfg, scene, m) for m in models]
    tasks = [r.meta.task for r in resolved]
    if len(set(tasks)) != len(tasks):
        raise ModelMismatchError(
            f"{', '.join(map(str, models))}: one run writes one product per task ({', '.join(tasks)}); "
            "run models of the same task separately"
        )
    for m, r in zip(models, resolved, strict=True):
        if r.meta.task == "buildings" and "building" not in {c.name for c in r.meta.classes}:
            raise ModelMismatchError(f"{m}: a buildings model needs a class named 'building'")
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
    if notice:
        notify(f"note: {notice}")
    bands = list(dict.fromkeys(b for r in resolved for b in r.bands))  # the union, in first-use order
    band_pos = tuple(tuple(bands.index(b) for b in r.bands) for r in resolved)
    model_sha = "+".join(r.sha256 for r in resolved)
    fp = fingerprint(cfg, model_sha)
    if check_output(cfg.out, fp, cfg.overwrite):
        notify(f"{cfg.out}: already complete for these inputs; nothing to do (--overwrite to redo)")
        return RunSummary(out=cfg.out, skipped=True)

    torch_free = all(
        r.baseline or runs_without_torch(str(m), cfg.device, cfg.engine)
        for m, r in zip(models, resolved, strict=True)
    )
    cluster.start(torch_free=not cluster.reuse and torch_free)
    plan = make_plan(scene, bands, work, cfg.tile, overlap, cfg.batch, cfg.block)
    tasks_ = [r.task(cfg, scene, m) for r, m in zip(resolved, models, strict=True)]
    if work is not None:  # a baseline on the models' coarser grid sees that grid's GSD
        gsd = scene.gsd_m * scene.shape[1] / int(work.shape.x)
        tasks_ = [replace(t, gsd_m=gsd) if isinstance(t, BaselineTask) else t for t in tasks_]
    multi = MultiTask(tuple(tasks_), band_pos)

    with staging_dir(cfg.out) as stage:
        gpkg = stage / GPKG
        sinks = []
        for r in resolved:
            tags = {"GEOSEG_MODEL_SHA256": r.sha256}
            if r.meta.task == "buildings":
                from geoseg.building_outputs import BuildingOutputs

                building_id = next(c.id for c in r.meta.classes if c.name == "building")
                sinks.append(
                    BuildingOutputs(stage, gpkg, scene.geobox, scene.gsd_m, building_id, tags, plan.blocks)
                )
            else:
                sinks.append(_LandcoverSink(stage, gpkg, scene, r.meta, tags))
        seams = [SeamMerger(*scene.shape) for _ in resolved]
        bar = tqdm(total=len(plan.grid), unit="tile", desc=scene.path.name, disable=not cfg.progress)

        def on_block(res: MultiBlock) -> None:
            merged_any = False
            for sink, seam, part in zip(sinks, seams, res.parts, strict=True):
                sink.add_block(plan.blocks[part.index], part)
                merged = seam.add(part.polygons)
                sink.add_polygons(merged)
                merged_any = merged_any or bool(merged)
            if merged_any and not cluster.model_in_this_process:
                release_free_memory()

        try:
            with cluster.client() as client:
                timings = execute(
                    plan,
                    client,
                    multi,  # type: ignore[arg-type]
                    cfg.blend,
                    on_block,
                    on_tiles=bar.update,
                    with_confidence=any(s.wants_confidence for s in sinks),
                    predict=predict_multi,
                    stitch=stitch_multi,
                )
            bar.close()
            timings.engines = {e for names in timings.engines for e in names.split(",")}
            if not cluster.reuse:
                cluster.begin_close()
            t_write = time.perf_counter()
            for sink, seam in zip(sinks, seams, strict=True):
                sink.blocks_done()
                sink.add_polygons(seam.finish())
                timings.vectorize_s += seam.merge_s
                sink.finish()
            timings.write_s += time.perf_counter() - t_write
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
        assets: dict = {}
        for sink in sinks:
            for key, value in sink.assets().items():
                if key in assets:  # the shared GeoPackage
                    value = (*value[:3], f"{assets[key][3]}; {value[3]}")
                assets[key] = value
        total = time.perf_counter() - t_start
        item = build_run_item(
            item_id=f"{scene.path.stem}-{'-'.join(tasks)}",
            scene_path=scene.path,
            scene_crs=scene.geobox.crs.to_wkt(),
            scene_bounds=tuple(scene.geobox.extent.boundingbox),
            scene_shape=scene.shape,
            scene_transform=scene.geobox.affine,
            assets=assets,
            parameters=cfg.model_dump(mode="json", exclude={"overwrite", "progress"})
            | {
                "models": [str(m) for m in models],
                "bands": bands,
                "bands_per_model": [r.bands for r in resolved],
                "overlap_used": overlap,
                "work_grid": None if work is None else [int(work.shape.y), int(work.shape.x)],
                **timings.inference_record(),
                "fingerprint": fp,
            },
            model={
                "path": " + ".join(map(str, models)),
                "sha256": model_sha,
                "models": [
                    {"path": str(m), "sha256": r.sha256, "metadata": r.meta.model_dump(mode="json")}
                    for m, r in zip(models, resolved, strict=True)
                ],
            },
            timing=timings.durations() | {"total_s": total, "tiles": len(plan.grid)},
            started=started,
            finished=datetime.now(timezone.utc),
        )
        item.properties["geoseg:fingerprint"] = fp
        write_item(item, stage / RUN_FILE)
    return RunSummary(
        out=cfg.out,
        skipped=False,
        tiles=len(plan.grid),
        tiles_skipped=timings.tiles_skipped,
        polygons=sum(s.polygons for s in sinks),
        seconds=total,
        notice=notice,
    )
