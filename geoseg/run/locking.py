"""One writer per output folder: an ``flock``-ed lock file beside it (``.NAME.lock``).

The kernel drops an ``flock`` when its process dies (killed, crashed, power loss), so a lock is never
stale: a lock file left behind by a dead run is simply locked again. The file holds the pid, host and
start time of its holder, for the message the next caller gets. ``flock`` is reliable on local file
systems; on NFS it maps to POSIX locks (Linux ≥ 2.6.12), which the server must support.

    with output_lock(out, wait=False):   # OutputLockedError if another process holds it
        ...
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from geoseg.errors import OutputError, OutputLockedError


def lock_path(out: Path) -> Path:
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.lock"


def lock_holder(out: Path) -> dict | None:
    """What the lock file of ``out`` says about its holder (pid, host, since), if anything."""
    try:
        return json.loads(lock_path(out).read_text())
    except (OSError, ValueError):
        return None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another geoseg process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"geoseg pid {holder.get('pid')} on {holder.get('host')} (since {since})"


@contextmanager
def output_lock(out: Path, wait: bool = False, notify: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the lock of output folder ``out`` (its parent is created if needed).

    ``wait``: block until the holder finishes (``notify`` hears once that it waits); otherwise raise
    ``OutputLockedError`` naming the holder. Yields the lock file's path.
    """
    path = lock_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create its parent folder: {exc.strerror}") from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(f"{out}: cannot create the lock file {path.name}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                holder = lock_holder(out)
                os.close(fd)
                raise OutputLockedError(
                    f"{out}: {_describe(holder)} is writing this output folder; wait for it "
                    "(--wait) or choose another --out"
                ) from None
            if notify is not None:
                notify(f"{out}: waiting for {_describe(lock_holder(out))} to finish")
                notify = None
            fcntl.flock(fd, fcntl.LOCK_EX)
        # the holder we waited for may have removed the file: lock the one that is there now
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)  # before unlocking: a waiter then re-opens a fresh file
        finally:
            os.close(fd)
