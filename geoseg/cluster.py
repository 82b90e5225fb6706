"""Start an embedded Dask LocalCluster or connect to an existing scheduler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster

from geoseg.allocator import ALLOCATOR_ENV
from geoseg.config import ClusterConfig


def worker_environ(cfg: ClusterConfig) -> dict[str, str]:
    """Environment set in each worker process before it starts."""
    threads = str(cfg.resolved_torch_threads())
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": "1"})
    if cfg.allocator_tuning:
        env.update(ALLOCATOR_ENV)
    return env


@contextmanager
def dask_client(cfg: ClusterConfig) -> Iterator[Client]:
    """A connected client; an embedded LocalCluster is closed again on exit."""
    if cfg.scheduler:
        client = Client(cfg.scheduler, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(cfg)}):
        cluster = LocalCluster(
            n_workers=cfg.resolved_workers(),
            threads_per_worker=cfg.threads_per_worker,
            processes=__import__("os").environ.get("GEOSEG_PROCESSES", "1") == "1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
