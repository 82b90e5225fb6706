"""Output folders: written in a hidden staging folder beside ``--out``, verified, then renamed into place.

What geoseg wrote is recorded in ``run.json`` (``geoseg:outputs``: size and SHA-256 of every file), so
a rerun checks a finished folder before calling it complete, and ``--overwrite`` only ever replaces a
folder that holds nothing but those files. A run's staging folder is named after its fingerprint, so a
killed run leaves a folder that a rerun of the same command picks up (``geoseg.run.resume``); staging
folders of other inputs are removed by the next run on that ``--out``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from geoseg.errors import OutputError, OutputExistsError

RUN_FILE = "run.json"
OUTPUTS_KEY = "geoseg:outputs"  # run.json property: {file name: {"size": bytes, "sha256": hex}}


def finished_run(out: Path) -> dict | None:
    """The run record of a finished output folder, or None."""
    try:
        record = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def file_record(path: Path) -> dict:
    """Size and SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def output_records(folder: Path) -> dict[str, dict]:
    """``file_record`` of every file in ``folder`` except ``run.json`` (which holds these records)."""
    return {p.name: file_record(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != RUN_FILE}


def written_files(record: dict) -> set[str]:
    """Names of the files a run record says geoseg wrote (its manifest; older records: asset hrefs)."""
    props = record.get("properties", {})
    names = set(props.get(OUTPUTS_KEY, {}) or {})
    if not names:
        for asset in (record.get("assets") or {}).values():
            href = str(asset.get("href", ""))
            if href.startswith("./") and "/" not in href[2:]:
                names.add(href[2:])
    return names | {RUN_FILE}


def damaged_outputs(out: Path, record: dict) -> str | None:
    """Why the files of a finished folder do not match its record (None if they all do)."""
    outputs = record.get("properties", {}).get(OUTPUTS_KEY)
    if not outputs:
        return "its run.json lists no output checksums"
    for name, expected in sorted(outputs.items()):
        path = out / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected.get("size"):
            return f"{name} has {path.stat().st_size} bytes, not {expected.get('size')}"
        if file_record(path)["sha256"] != expected.get("sha256"):
            return f"{name} does not match its recorded SHA-256"
    return None


def check_out_path(out: Path, inputs: Sequence[Path] = ()) -> None:
    """Refuse an ``--out`` that cannot be an output folder, or that holds an input; raises ``OutputError``."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file, not a folder; choose another --out")
    res = out.resolve()
    for p in inputs:
        try:
            inside = p.resolve().is_relative_to(res)
        except OSError:
            inside = False
        if inside:
            raise OutputError(f"{out}: holds the input {p}; choose an --out folder that does not contain it")


def check_output(out: Path, fingerprint: str, overwrite: bool) -> tuple[bool, str | None]:
    """Whether ``out`` already holds this exact run, intact: (True, None) means nothing to do.

    (False, why) when it must be (re)made: ``why`` says what was wrong with a finished folder of these
    inputs (damaged or deleted files), or is None. Raises ``OutputExistsError`` if ``out`` holds files
    geoseg did not write (never replaced, not even with ``overwrite``), or another run without
    ``overwrite``.
    """
    check_out_path(out)
    if not out.exists() or not any(out.iterdir()):
        return False, None
    record = finished_run(out)
    ours = written_files(record) if record else set()
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours or not p.is_file())
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputExistsError(
            f"{out}: holds files geoseg did not write ({shown}); geoseg never replaces them, "
            "choose another --out"
        )
    same = record is not None and record.get("properties", {}).get("geoseg:fingerprint") == fingerprint
    if record is not None and same and not overwrite:
        why = damaged_outputs(out, record)
        return (True, None) if why is None else (False, why)
    if not overwrite:
        raise OutputExistsError(
            f"{out}: output folder already holds a different geoseg run; use --overwrite to replace it"
        )
    return False, None


def stage_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def stage_path(out: Path, key: str) -> Path:
    """The staging folder of the run ``key`` (its fingerprint) writing ``out``."""
    out = out.resolve()
    return out.parent / f"{stage_prefix(out)}{key[:16]}"


def clean_stale(out: Path, keep: Path | None = None) -> list[Path]:
    """Remove geoseg's leftovers beside ``out`` (staging folders of other runs, folders replaced by an
    interrupted commit), except ``keep``; call with the output lock held. Returns what was removed."""
    out = out.resolve()
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for p in out.parent.iterdir():
        if p == keep or not p.is_dir():
            continue
        if p.name.startswith(stage_prefix(out)) or p.name.startswith(f".{out.name}.old-"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def commit(stage: Path, out: Path) -> None:
    """Replace ``out`` by ``stage`` (two renames; the replaced folder is removed afterwards)."""
    out = out.resolve()
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(stage, out)
    _fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder; on success it replaces ``out``, on failure it is removed."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f"{stage_prefix(out)}{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    commit(stage, out)


@contextmanager
def atomic_path(path: Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` only on success.
    ``keep_suffix``: the temporary name ends in ``path``'s suffix (drivers such as GDAL's GeoPackage
    go by it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    name = f".{path.stem}.{tag}.tmp{path.suffix}" if keep_suffix else f".{path.name}.{tag}.tmp"
    tmp = path.with_name(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def durable_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` so that it is either complete or absent after a crash or power loss."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
