"""One date's land-cover run on its AOI clip: ``geoseg run`` (the tiled Dask pipeline) on the clip.

The clip's band descriptions are the workflow's band names, so checkpoints and ``baseline:landcover``
pick their bands by name; ``date`` is the acquisition date from the file name or STAC item. The result
is a regular run folder (``landcover.tif``, ``geoseg.gpkg``, ``run.json``) that ``geoseg change`` reads.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from geoseg.cluster import ClusterStart
from geoseg.monitor.config import MonitorWorkflow


def run_date(wf: MonitorWorkflow, clip: Path, date: dt.date, out: Path, cluster: ClusterStart) -> None:
    """Produce the run folder ``out`` for the clip of one date (replacing what is there)."""
    from geoseg.run import run_scene

    cfg = wf.run_config(scene=clip, out=out, date=date)
    run_scene(cfg, notify=lambda m: None, cluster=cluster)
