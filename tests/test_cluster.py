"""The embedded LocalCluster: worker processes start with the allocator and thread settings."""

from __future__ import annotations

import os

from geoseg.allocator import ALLOCATOR_ENV
from geoseg.cluster import dask_client, worker_environ
from geoseg.config import ClusterConfig


def _env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in [*ALLOCATOR_ENV, "OMP_NUM_THREADS"]}


def test_local_cluster_workers_get_allocator_and_thread_env():
    cfg = ClusterConfig(workers=1, processes=True, threads_per_worker=2, torch_threads=1)
    with dask_client(cfg) as client:
        envs = list(client.run(_env).values())
        assert sum(client.nthreads().values()) == 2
    assert len(envs) == 1
    assert envs[0] == ALLOCATOR_ENV | {"OMP_NUM_THREADS": "1"}


def test_allocator_tuning_can_be_turned_off():
    env = worker_environ(ClusterConfig(allocator_tuning=False))
    assert all(env.get(k) != v for k, v in ALLOCATOR_ENV.items())  # Dask's own defaults may remain


def test_one_worker_runs_in_process_several_in_processes():
    assert not ClusterConfig().resolved_processes()
    assert ClusterConfig(workers=2).resolved_processes()
    assert not ClusterConfig(workers=2, processes=False).resolved_processes()
    with dask_client(ClusterConfig(threads_per_worker=1)) as client:
        pids = set(client.run(os.getpid).values())
        import distributed

        assert any(isinstance(w, distributed.Worker) for w in client.cluster.workers.values())
    assert pids == {os.getpid()}
