"""Worker tasks of a run with several models (``geoseg run --model landcover_rgb.pt --model
buildings_rgb.pt``): one read, several products.

Each batch task reads its tiles once (the union of the models' bands) and runs every model on them; each
block task stitches every model's probabilities into its own labels and polygons. ``geoseg.run.job`` writes
each model's outputs as for a single model (``landcover.tif``, ``buildings.tif``, their layers in one
``geoseg.gpkg``) and one ``run.json`` lists all models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from geoseg.inference.offheap import offheap_copy
from geoseg.inference.precision import cpu_label
from geoseg.io.raster import read_window
from geoseg.run.graph import BatchResult, BatchStats, BlockResult, ModelTask, model_predictor, stitch_block


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
        model_s, engine, precision = 0.0, "", ""
        if kept:
            predictor = model_predictor(task)
            engine, precision = predictor.engine.name, predictor.engine.precision
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
            precision,
            cpu_label(),
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
    stats = combined_stats(parts)
    return MultiBlock(
        index,
        parts,
        tuple(stats),
        sum(p.stitch_s for p in parts),
        sum(p.vectorize_s for p in parts),
    )


def combined_stats(parts: tuple[BlockResult, ...]) -> tuple[BatchStats, ...]:
    """One ``BatchStats`` per batch of a block from every model's (reads counted once; engines and their
    precisions comma-joined, model by model)."""
    out = []
    for stats in zip(*(p.batches for p in parts), strict=True):
        out.append(
            BatchStats(
                sum(x.read_s for x in stats),
                sum(x.predict_s for x in stats),
                sum(x.task_predict_s for x in stats),
                stats[0].tiles,
                stats[0].predicted,
                max(x.finished_at for x in stats),
                ",".join(x.engine for x in stats),
                ",".join(x.precision for x in stats),
                stats[0].cpu,
            )
        )
    return tuple(out)
