"""Atomic output folders: everything is written to a hidden staging folder, then renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geoseg.errors import OutputExistsError

RUN_FILE = "run.json"


def finished_run(out: Path) -> dict | None:
    """The run record of a finished output folder, or None."""
    try:
        return json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


def check_output(out: Path, fingerprint: str, overwrite: bool) -> bool:
    """True if ``out`` already holds this exact run (nothing to do).

    Raises ``OutputExistsError`` if ``out`` holds something else and ``overwrite`` is off.
    """
    if not out.exists():
        return False
    record = finished_run(out)
    if (
        record is not None
        and record.get("properties", {}).get("geoseg:fingerprint") == fingerprint
        and not overwrite
    ):
        return True
    if not overwrite:
        what = "a different geoseg run" if record else "other files"
        raise OutputExistsError(f"{out}: output folder already holds {what}; use --overwrite to replace it")
    return False


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder; on success it replaces ``out``, on failure it is removed."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:6]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
