"""Start an embedded Dask LocalCluster or connect to an existing scheduler.

Workers run in their own processes by default, started with the allocator and thread settings of
``worker_environ``. ``processes=False`` runs one in the command's own process: measured on 2 cores, 4 %
faster end to end at 8192² (nothing imported twice, no results pickled), but with the allocator setting
the single heap also keeps what the client held, and the 16384² run peaked at 9.1 GiB against 5.5-6.4 GiB
for client plus worker process, so it is not the default.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster

from geoseg.config import ClusterConfig
from geoseg.inference.openvino import WORKER_TORCH_ENV
from geoseg.run.allocator import ALLOCATOR_ENV

# another process's cluster holding Dask's default dashboard port: distributed moves to a free one and
# says so in a multi-line warning, noise for a command line tool (no dashboard is served for users)
warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)

# GDAL block cache of worker processes, MB (unless GDAL_CACHEMAX is set).
WORKER_GDAL_CACHE_MB = "64"
# Imported by every embedded worker as it starts (see geoseg/run/worker_startup.py).
WORKER_PRELOAD = "geoseg.run.worker_startup"


def worker_environ(cfg: ClusterConfig, torch_free: bool = False) -> dict[str, str]:
    """Environment set in each worker process before it starts (``torch_free``: its model runs without
    torch, so the worker does not preload it)."""
    threads = str(cfg.resolved_torch_threads())
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": "1"})
    # workers keep scenes open (geoseg.io.raster): a small block cache serves the tile overlaps (the
    # blocks of one row of 1024-pixel output blocks: ~50 MB for a 3-band uint8 scene 16384 pixels wide),
    # while GDAL's default (5 % of RAM) filled up with blocks that are never read again
    env.setdefault("GDAL_CACHEMAX", os.environ.get("GDAL_CACHEMAX", WORKER_GDAL_CACHE_MB))
    if cfg.allocator_tuning:
        env.update(ALLOCATOR_ENV)
    if torch_free:
        env[WORKER_TORCH_ENV] = "0"
    return env


def _local_cluster(cfg: ClusterConfig, torch_free: bool = False, preload: bool = True) -> LocalCluster:
    # distributed's log lines (comms closed by an early exit on bad input, "Compute Failed" with the
    # worker-side traceback of a task's error) are noise here: task errors reach the client, which
    # reports them in one line; set for the process, as in-process workers may still log while closing
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    env = worker_environ(cfg, torch_free)
    settings = {
        "distributed.nanny.pre-spawn-environ": env,
        # Dask's statistical profiler samples every worker thread 100 times a second for a dashboard
        # that embedded clusters do not serve (≈ 1 % of a 2-core run's CPU in a py-spy profile)
        "distributed.worker.profile.enabled": False,
    }
    # distributed lets the parent's environment override this config and writes the values it used into
    # the parent's environment (distributed.nanny), so a second cluster of this process would inherit the
    # first one's: ours are set for the start and the parent's own restored afterwards
    parent = {k: os.environ.get(k) for k in env} if cfg.processes else {}
    os.environ.update({k: env[k] for k in parent})
    try:
        with dask.config.set(settings):
            return _start_local_cluster(cfg, preload)
    finally:
        for k, v in parent.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start_local_cluster(cfg: ClusterConfig, preload: bool) -> LocalCluster:
    return LocalCluster(
        n_workers=cfg.resolved_workers(),
        threads_per_worker=cfg.threads_per_worker,
        processes=cfg.processes,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
        preload=[WORKER_PRELOAD] if preload else [],
    )


class ClusterStart:
    """The run's cluster, started on first use (``start()`` or ``client()``) in a background thread.

    With ``cfg.scheduler`` nothing is started: ``client()`` connects to that scheduler. ``reuse``: the
    caller runs several scenes on it, so ``run_scene`` must not begin closing it when its scene is done.
    ``models``: its workers run models (they preload the model libraries as they start).
    """

    def __init__(self, cfg: ClusterConfig, reuse: bool = False, models: bool = True) -> None:
        self.cfg = cfg
        self.reuse = reuse
        self.models = models
        self._pool: ThreadPoolExecutor | None = None
        self._cluster: Future[LocalCluster] | None = None
        self._closing: Future[None] | None = None

    @property
    def model_in_this_process(self) -> bool:
        """Whether the embedded worker, and so the model, runs in this process."""
        return not self.cfg.scheduler and not self.cfg.processes

    def start(self, torch_free: bool = False) -> None:
        """Begin starting the embedded cluster (no-op if started or if connecting to a scheduler);
        ``torch_free``: the run's model needs no torch in the workers (``runs_without_torch``)."""
        if self.cfg.scheduler or self._pool is not None:
            return
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="geoseg-cluster")
        self._cluster = self._pool.submit(_local_cluster, self.cfg, torch_free, self.models)

    @contextmanager
    def client(self) -> Iterator[Client]:
        self.start()
        if self._cluster is None:
            client = Client(self.cfg.scheduler, timeout="30s")
        else:
            client = Client(self._cluster.result())
        try:
            yield client
        finally:
            client.close()

    def begin_close(self) -> None:
        """Start closing in the background (workers take a moment to stop) while the caller finishes."""
        if self._pool is not None and self._closing is None:
            self._closing = self._pool.submit(self._close)

    def close(self) -> None:
        """Close the embedded cluster (waiting for a start or close still under way)."""
        self.begin_close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _close(self) -> None:
        if self._cluster is None:  # never started
            return
        try:
            cluster = self._cluster.result()
        except Exception:  # it never started: nothing to close (the error surfaced in client())
            return
        cluster.close()

    def __enter__(self) -> ClusterStart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def dask_client(cfg: ClusterConfig) -> Iterator[Client]:
    """A connected client; an embedded LocalCluster is closed again on exit."""
    with ClusterStart(cfg) as start, start.client() as client:
        yield client
