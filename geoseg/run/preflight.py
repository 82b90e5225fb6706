"""Checks of options and environment made before anything starts (no cluster, no output), each failing
with a one-line ``GeosegError``: the scene is a regular file, the device exists, the scheduler answers,
the output folder can be created and written, and interrupts become errors while a run is under way."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from geoseg.errors import InterruptedRun, OptionError, SceneError

SCHEDULER_TIMEOUT_S = 5.0
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_scene_file(path: Path) -> None:
    """A scene must be a regular file: GDAL would block forever reading a FIFO, or read a device."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SceneError(f"{path}: no such file") from None
    except OSError as exc:
        raise SceneError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SceneError(f"{path}: is a directory, not a raster")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        raise SceneError(f"{path}: is {kind}, not a raster file")


def check_device(device: str) -> None:
    """``auto``, ``cpu`` or ``cuda[:N]``, and a CUDA device must exist here."""
    if not _DEVICE.match(device):
        raise OptionError(f"--device {device!r}: expected auto, cpu or cuda[:N]")
    if device.startswith("cuda"):
        import torch  # only for CUDA requests: torch-free CPU runs stay torch-free

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if n == 0:
            raise OptionError(f"--device {device}: no CUDA GPU is available here (use --device cpu or auto)")
        if index >= n:
            raise OptionError(f"--device {device}: only {n} CUDA device(s) here (cuda:0 to cuda:{n - 1})")


def check_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT_S) -> None:
    """A Dask scheduler answers at ``address`` (TCP connect, then its ``identity``) within ``timeout``."""
    url = urlsplit(address if "://" in address else f"tcp://{address}")
    if url.scheme == "inproc":  # a scheduler in this very process (tests, notebooks)
        return
    if url.scheme not in ("tcp", "tls", "ws", "wss") or not url.hostname or url.port is None:
        raise OptionError(f"--scheduler {address}: expected tcp://host:port")
    if url.scheme == "tcp":
        try:
            with socket.create_connection((url.hostname, url.port), timeout=timeout):
                pass
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise OptionError(
                f"--scheduler {address}: cannot connect within {timeout:g} s ({reason})"
            ) from None

    import asyncio

    from distributed.comm import connect

    async def identity() -> dict:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    try:
        info = asyncio.run(asyncio.wait_for(identity(), timeout))
        ok = isinstance(info, dict) and info.get("type") == "Scheduler"
    except BaseException as exc:  # noqa: BLE001 - whatever answered, it is not a usable scheduler
        if isinstance(exc, KeyboardInterrupt):
            raise
        ok = False
    if not ok:
        raise OptionError(f"--scheduler {address}: no Dask scheduler answers there within {timeout:g} s")


def check_out_writable(out: Path) -> None:
    """The output folder can be created (or exists) and a file can be written beside it."""
    out = Path(os.path.abspath(out))
    if out.exists() and not out.is_dir():
        return  # refused with its own message by geoseg.io.staging.check_out_path
    base = out.parent
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise OptionError(f"--out {out}: {base} is a file, so no folder can be created under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.probe-", dir=base)
    except OSError as exc:
        why = {errno.EROFS: "read-only file system"}.get(exc.errno or 0, exc.strerror or str(exc))
        raise OptionError(f"--out {out}: cannot write in {base} ({why})") from None
    os.close(fd)
    os.unlink(probe)


class Interrupts:
    """While active (main thread only), SIGINT and SIGTERM raise ``InterruptedRun``; inside
    ``critical()`` they are held until it ends (a commit is never cut in half)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._held = 0
        self._pending: int | None = None

    def _handler(self, signum: int, frame: object) -> None:
        if self._held:
            self._pending = signum
            return
        raise InterruptedRun(signum)

    @contextmanager
    def active(self) -> Iterator[Interrupts]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    @contextmanager
    def critical(self) -> Iterator[None]:
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and self._pending is not None:
                signum, self._pending = self._pending, None
                raise InterruptedRun(signum)
