"""One date's land-cover run on its AOI clip: ``geoseg run`` (the tiled Dask pipeline) on the clip.

The clip's band descriptions are the workflow's band names, so checkpoints and ``baseline:landcover``
pick their bands by name; ``date`` is the acquisition date from the file name or STAC item. The result
is a regular run folder (``landcover.tif``, ``geoseg.gpkg``, ``run.json``) that ``geoseg change`` reads.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from geoseg.monitor.config import MonitorWorkflow
from geoseg.run.cluster import ClusterStart


def run_date(wf: MonitorWorkflow, clip: Path, date: dt.date, out: Path, cluster: ClusterStart) -> None:
    """Produce the run folder ``out`` for the clip of one date (replacing what is there)."""
    from geoseg.inference.openvino import WORKER_TORCH_ENV, runs_without_torch
    from geoseg.run.job import run_scene

    cfg = wf.run_config(scene=clip, out=out, date=date)
    # the monitor's cluster is shared by its dates, all run by one model: start it without torch where
    # that model needs none (geoseg run cannot know that of a shared cluster); no-op once started
    torch_free = all(
        m.startswith("baseline:") or runs_without_torch(m, cfg.device, cfg.engine) for m in wf.models
    )
    if torch_free and not wf.cluster.processes and not wf.cluster.scheduler:
        # an in-process worker's preload reads this process's environment (not the spawn environment)
        os.environ.setdefault(WORKER_TORCH_ENV, "0")
    cluster.start(torch_free=torch_free)
    run_scene(cfg, notify=lambda m: None, cluster=cluster)
