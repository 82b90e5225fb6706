"""The embedded LocalCluster: worker processes start with the allocator and thread settings."""

from __future__ import annotations

import os

from geoseg.config import ClusterConfig
from geoseg.run.allocator import ALLOCATOR_ENV
from geoseg.run.cluster import WORKER_GDAL_CACHE_MB, dask_client, worker_environ


def _profiling(dask_worker) -> bool:
    return any(name.startswith("profile") for name in dask_worker.periodic_callbacks)


def _env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in [*ALLOCATOR_ENV, "OMP_NUM_THREADS", "GDAL_CACHEMAX"]}


def test_local_cluster_workers_get_allocator_and_thread_env():
    cfg = ClusterConfig(workers=1, threads_per_worker=2, torch_threads=1)
    # the client's own setting wins, else the workers' small cache (read before the cluster starts)
    cache = os.environ.get("GDAL_CACHEMAX", WORKER_GDAL_CACHE_MB)
    with dask_client(cfg) as client:
        envs = list(client.run(_env).values())
        assert sum(client.nthreads().values()) == 2
        assert list(client.run(_profiling).values()) == [False]  # no dashboard, no stack sampling
    assert len(envs) == 1
    assert envs[0] == ALLOCATOR_ENV | {"OMP_NUM_THREADS": "1", "GDAL_CACHEMAX": cache}


def test_allocator_tuning_can_be_turned_off():
    env = worker_environ(ClusterConfig(allocator_tuning=False))
    assert all(env.get(k) != v for k, v in ALLOCATOR_ENV.items())  # Dask's own defaults may remain


def test_in_process_worker_runs_in_this_process():
    assert ClusterConfig().processes  # worker processes by default
    with dask_client(ClusterConfig(processes=False, threads_per_worker=1)) as client:
        pids = set(client.run(os.getpid).values())
    assert pids == {os.getpid()}


def test_a_second_cluster_of_the_process_gets_its_own_settings():
    """distributed writes the settings it started workers with into the parent's environment and prefers
    them over the config: a later cluster in the same process (a workflow, a test session) must still
    start its workers with its own thread count, and the parent keeps its own environment."""
    before = os.environ.get("OMP_NUM_THREADS")
    for threads in (2, 1):
        cfg = ClusterConfig(workers=1, threads_per_worker=1, torch_threads=threads)
        with dask_client(cfg) as client:
            assert next(iter(client.run(_env).values()))["OMP_NUM_THREADS"] == str(threads)
    assert os.environ.get("OMP_NUM_THREADS") == before
