"""Processes that run the model themselves restart once with the glibc allocator settings."""

from __future__ import annotations

import os
import subprocess
import sys

from geoseg.run.allocator import ALLOCATOR_ENV

SCRIPT = (
    "from geoseg.run.allocator import reexec_with_allocator_env as r; r(['models']); print('not restarted')"
)


def run(env: dict) -> str:
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env).stdout


def test_restarts_with_the_allocator_env_once():
    base = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV and k != "GEOSEG_ALLOCATOR_TUNING"}
    out = run(base)
    assert "architectures:" in out and "not restarted" not in out  # exec'd into `geoseg models`
    assert "not restarted" in run(base | ALLOCATOR_ENV)  # already tuned: nothing to do
    assert "not restarted" in run(base | {"GEOSEG_ALLOCATOR_TUNING": "0"})  # opted out


TRIM_SCRIPT = """
import psutil
from geoseg.run.allocator import release_free_memory
rss = lambda: psutil.Process().memory_info().rss
chunks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MiB of heap chunks (below the mmap threshold)
kept = chunks[::8]  # every 8th stays: the heap cannot shrink from its top
del chunks
before = rss()
print(release_free_memory(), before, rss(), len(kept))
"""


def test_release_free_memory_returns_free_heap_pages():
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, env=base, check=True
    )
    released, before, after, _ = out.stdout.split()
    assert released == "True"
    assert int(before) - int(after) > 150 * 2**20  # most of the 219 MiB freed in the middle of the heap
