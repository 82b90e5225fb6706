"""Start an embedded Dask LocalCluster or connect to an existing scheduler.

``ClusterStart`` begins starting the cluster in a background thread as soon as it is created: worker
processes spawn and import torch and the model libraries (seconds of CPU on their own core) while the
command imports the rest of geoseg and checks its inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster

from geoseg.allocator import ALLOCATOR_ENV
from geoseg.config import ClusterConfig

# Imported by every embedded worker as it starts (see geoseg/worker_startup.py).
WORKER_PRELOAD = "geoseg.worker_startup"


def worker_environ(cfg: ClusterConfig) -> dict[str, str]:
    """Environment set in each worker process before it starts."""
    threads = str(cfg.resolved_torch_threads())
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": "1"})
    if cfg.allocator_tuning:
        env.update(ALLOCATOR_ENV)
    return env


def _local_cluster(cfg: ClusterConfig) -> LocalCluster:
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(cfg)}):
        return LocalCluster(
            n_workers=cfg.resolved_workers(),
            threads_per_worker=cfg.threads_per_worker,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            preload=[WORKER_PRELOAD],
        )


class ClusterStart:
    """A cluster being started in the background; ``client()`` waits for it, ``close()`` stops it.

    With ``cfg.scheduler`` nothing is started: ``client()`` connects to that scheduler. ``reuse``: the
    caller runs several scenes on it, so ``run_scene`` must not begin closing it when its scene is done.
    """

    def __init__(self, cfg: ClusterConfig, reuse: bool = False) -> None:
        self.cfg = cfg
        self.reuse = reuse
        self._closing: Future[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._cluster: Future[LocalCluster] | None = None
        if not cfg.scheduler:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="geoseg-cluster-start")
            self._cluster = self._pool.submit(_local_cluster, cfg)

    @contextmanager
    def client(self) -> Iterator[Client]:
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
