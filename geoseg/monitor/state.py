"""The monitor's state file (small JSON, replaced atomically) and its lock (one call per output folder)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from geoseg.errors import GeosegError
from geoseg.io.staging import atomic_write_text

STATE_FILE = "monitor_state.json"
LOCK_FILE = ".monitor.lock"
STATE_VERSION = 1


class MonitorBusyError(GeosegError):
    """Another ``geoseg monitor`` call holds the output folder's lock."""


class MonitorLock:
    """``fcntl.flock`` on ``OUT/.monitor.lock``: exclusive, released by the kernel when the process dies
    (so a killed call never leaves a stale lock). Non-blocking unless ``wait``."""

    def __init__(self, out: Path, wait: bool = False) -> None:
        self.path = out / LOCK_FILE
        self.wait = wait
        self.fd: int | None = None

    def __enter__(self) -> MonitorLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise MonitorBusyError(
                    f"{self.path.parent}: another geoseg monitor call (pid {holder}) is running on this "
                    "output folder; nothing done (use --wait to queue)"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def load_state(out: Path, name: str) -> dict[str, Any]:
    path = out / STATE_FILE
    if not path.exists():
        return {"version": STATE_VERSION, "workflow": name, "scenes": {}, "steps": {}, "outputs_dirty": True}
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeosegError(f"{path}: unreadable monitor state ({exc}); move it away to start over") from None
    if state.get("version") != STATE_VERSION:
        raise GeosegError(f"{path}: state version {state.get('version')} is not {STATE_VERSION}")
    return state


def save_state(out: Path, state: dict[str, Any]) -> None:
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def remove_partials(out: Path) -> int:
    """Remove staging folders / temporary files left by a killed call (the lock is held)."""
    n = 0
    inputs = sorted(p for p in (out / "inputs").glob("*") if p.is_dir())
    for folder in (out, out / "runs", out / "changes", out / "changes_since_first", out / "inputs", *inputs):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and (".partial-" in p.name or ".old-" in p.name or ".tmp" in p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                n += 1
    return n
