"""Processes that run the model themselves restart once with the glibc allocator settings."""

from __future__ import annotations

import os
import subprocess
import sys

from geoseg.allocator import ALLOCATOR_ENV

SCRIPT = "from geoseg.allocator import reexec_with_allocator_env as r; r(['models']); print('not restarted')"


def run(env: dict) -> str:
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env).stdout


def test_restarts_with_the_allocator_env_once():
    base = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV and k != "GEOSEG_ALLOCATOR_TUNING"}
    out = run(base)
    assert "architectures:" in out and "not restarted" not in out  # exec'd into `geoseg models`
    assert "not restarted" in run(base | ALLOCATOR_ENV)  # already tuned: nothing to do
    assert "not restarted" in run(base | {"GEOSEG_ALLOCATOR_TUNING": "0"})  # opted out
