"""``geoseg monitor``: process the scenes a workflow's source offers that are not done yet, compare each
valid date with the previous one (and optionally the first), and keep the history outputs current.

Layout of the output folder::

    inputs/<date>/<scene>.tif  the scene clipped to the AOI, invalid pixels masked (what the run reads)
    runs/<date>/               a regular run folder per valid date (landcover.tif, geoseg.gpkg, run.json)
    changes/<d0>_<d1>/         change between consecutive valid dates (change.tif, change.gpkg, ...)
    changes_since_first/...    change from the first valid date (``change.against_first``)
    history.gpkg, timeseries.csv, timeseries.png, catalog.json
    monitor_state.json         state (atomic), .monitor.lock (flock)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rasterio.errors import RasterioError

from geoseg.errors import GeosegError
from geoseg.io.staging import RUN_FILE
from geoseg.monitor.change import compute_change
from geoseg.monitor.config import MonitorWorkflow
from geoseg.monitor.outputs import OUTPUTS, DateRun, Step, write_catalog, write_history, write_timeseries
from geoseg.monitor.runs import run_date
from geoseg.monitor.scenes import SceneSkipped, clip_scene, discover, load_aoi
from geoseg.monitor.state import MonitorLock, load_state, remove_partials, save_state


@dataclass
class MonitorSummary:
    workflow: str
    out: str
    new_dates: list[str] = field(default_factory=list)
    new_steps: list[str] = field(default_factory=list)
    removed_steps: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # scene key -> reason (this call)
    skipped: dict[str, str] = field(default_factory=dict)  # scene key -> reason (this call)
    not_retried: dict[str, str] = field(default_factory=dict)  # failed/skipped before, file unchanged
    dates: list[str] = field(default_factory=list)  # every valid date in the history
    steps: int = 0
    outputs_written: bool = False

    @property
    def nothing_new(self) -> bool:
        return not (self.new_dates or self.new_steps or self.removed_steps or self.failed or self.skipped)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        if self.nothing_new and not self.outputs_written:
            return (
                f"{self.workflow}: nothing new ({len(self.dates)} dates, {self.steps} change steps"
                + (
                    f", {len(self.not_retried)} earlier failed/skipped scenes unchanged"
                    if self.not_retried
                    else ""
                )
                + f") in {self.out}"
            )
        parts = [
            f"{len(self.new_dates)} new date(s)"
            + (f" ({', '.join(self.new_dates)})" if self.new_dates else "")
        ]
        parts.append(f"{len(self.new_steps)} change step(s) computed")
        if self.removed_steps:
            parts.append(f"{len(self.removed_steps)} replaced")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        parts.append(f"{len(self.failed)} failed")
        return (
            f"{self.workflow}: "
            + ", ".join(parts)
            + f"; {len(self.dates)} dates, {self.steps} steps in {self.out}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"nothing_new": self.nothing_new, "exit_code": self.exit_code}


def _token(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def run_monitor(
    wf: MonitorWorkflow, notify: Callable[[str], None] = print, wait: bool = False
) -> MonitorSummary:
    """One monitoring pass (see the module docstring); holds the output folder's lock throughout."""
    out = wf.out.resolve()
    summary = MonitorSummary(workflow=wf.name, out=str(out))
    with MonitorLock(out, wait=wait):
        if remove_partials(out):
            notify("note: removed unfinished outputs of an interrupted call")
        state = load_state(out, wf.name)
        refs = discover(wf.scenes)
        aoi = load_aoi(wf.aoi)
        proc = wf.processing_hash()
        _process_scenes(wf, out, state, refs, aoi, proc, summary, notify)
        _process_steps(wf, out, state, summary, notify)
        runs, steps = _current(state)
        summary.dates = [r.date.isoformat() for r in runs]
        summary.steps = len([s for s in steps if s.kind == "previous"])
        missing = any(not (out / name).exists() for name in OUTPUTS)
        if state.get("outputs_dirty") or missing:
            write_history(out, runs, [s for s in steps], wf.history_landcover)
            write_timeseries(out, runs, steps)
            write_catalog(out, wf.name, runs, steps)
            state["outputs_dirty"] = False
            save_state(out, state)
            summary.outputs_written = True
    return summary


def _dirty(out: Path, state: dict) -> None:
    if not state.get("outputs_dirty"):
        state["outputs_dirty"] = True
        save_state(out, state)


def _process_scenes(wf, out, state, refs, aoi, proc, summary, notify) -> None:
    from geoseg.run.cluster import ClusterStart

    scenes: dict[str, dict] = state["scenes"]
    # checkpoint runs share one cluster, started by the first scene with work to do (lazily)
    with ClusterStart(wf.cluster, reuse=True) as cluster:
        for ref in refs:
            token = _token(ref.identity, proc, ref.date.isoformat() if ref.date else None)
            prev = scenes.get(ref.key)
            if prev is not None and prev.get("token") == token:
                if prev["status"] == "done" and (out / prev["run"] / RUN_FILE).is_file():
                    continue
                if prev["status"] in ("failed", "skipped"):
                    summary.not_retried[ref.key] = prev["reason"]
                    continue
            record = {
                "path": str(ref.path),
                "date": ref.date.isoformat() if ref.date else None,
                "token": token,
            }
            if prev is not None and prev.get("status") == "done":
                _dirty(out, state)  # a changed file replaces a date that is in the history
            date_owner = next(
                (
                    k
                    for k, s in scenes.items()
                    if k != ref.key and s["status"] == "done" and s["date"] == record["date"]
                ),
                None,
            )
            if ref.problem or date_owner:
                reason = ref.problem or f"date {ref.date} is already provided by {date_owner}"
                scenes[ref.key] = record | {"status": "failed", "reason": reason}
                summary.failed[ref.key] = reason
                notify(f"{ref.key}: failed: {reason}")
                save_state(out, state)
                continue
            assert ref.date is not None
            day = ref.date.isoformat()
            run_rel = f"runs/{day}"
            clip_rel = f"inputs/{day}/{ref.path.stem}.tif"  # the run's item id keeps the scene's name
            try:
                clip = clip_scene(ref, aoi, out / clip_rel, wf.bands, wf.masks, wf.min_clear_fraction)
                notify(
                    f"{ref.key}: {day}: running on the AOI clip "
                    f"({clip.valid_pixels} valid pixels, {clip.clear_fraction:.0%} clear)"
                )
                run_date(wf, clip.path, ref.date, out / run_rel, cluster)
            except SceneSkipped as exc:
                _drop_run(out, scenes, ref.key, run_rel)
                scenes[ref.key] = record | {"status": "skipped", "reason": str(exc)}
                summary.skipped[ref.key] = str(exc)
                notify(f"{ref.key}: skipped: {exc}")
                save_state(out, state)
                continue
            except Exception as exc:  # noqa: BLE001 - one scene's failure must not stop the others
                # bad input (unreadable file, wrong bands, ...) is not retried until the file changes;
                # anything else (disk full, a worker lost, a bug) is retried by the next call
                bad_input = isinstance(exc, (GeosegError, RasterioError))
                _drop_run(out, scenes, ref.key, run_rel)
                shutil.rmtree(out / "inputs" / day, ignore_errors=True)
                reason = _one_line(exc) if bad_input else f"{type(exc).__name__}: {_one_line(exc)}"
                scenes[ref.key] = record | {"status": "failed" if bad_input else "error", "reason": reason}
                summary.failed[ref.key] = reason
                notify(f"{ref.key}: failed: {reason}" + ("" if bad_input else " (retried next call)"))
                save_state(out, state)
                continue
            _dirty(out, state)
            scenes[ref.key] = record | {
                "status": "done", "reason": None, "run": run_rel,
                "clear_fraction": round(clip.clear_fraction, 6),
            }  # fmt: skip
            summary.new_dates.append(day)
            save_state(out, state)


def _drop_run(out: Path, scenes: dict, key: str, run_rel: str) -> None:
    """A scene that was done and now fails/skips leaves the history (its run folder goes)."""
    prev = scenes.get(key)
    if prev is not None and prev.get("status") == "done":
        shutil.rmtree(out / run_rel, ignore_errors=True)
        shutil.rmtree(out / "inputs" / prev["date"], ignore_errors=True)


def _valid_dates(state: dict) -> list[tuple[dt.date, str, str]]:
    """(date, scene key, run token) of every done scene, in date order."""
    done = [
        (dt.date.fromisoformat(s["date"]), k, s["token"])
        for k, s in state["scenes"].items()
        if s["status"] == "done"
    ]
    return sorted(done)


def _desired_steps(wf: MonitorWorkflow, state: dict) -> dict[str, dict]:
    dates = _valid_dates(state)
    steps: dict[str, dict] = {}
    ch = wf.change_hash()
    for (d0, _, t0), (d1, _, t1) in itertools.pairwise(dates):
        rel = f"changes/{d0.isoformat()}_{d1.isoformat()}"
        steps[rel] = {
            "kind": "previous",
            "before": d0.isoformat(),
            "after": d1.isoformat(),
            "token": _token(t0, t1, ch),
        }
    if wf.change.against_first and dates:
        d0, _, t0 = dates[0]
        for d1, _, t1 in dates[2:]:  # the second date's step equals the consecutive one
            rel = f"changes_since_first/{d0.isoformat()}_{d1.isoformat()}"
            steps[rel] = {
                "kind": "first",
                "before": d0.isoformat(),
                "after": d1.isoformat(),
                "token": _token(t0, t1, ch),
            }
    return steps


def _process_steps(wf, out, state, summary, notify) -> None:
    have: dict[str, dict] = state["steps"]
    want = _desired_steps(wf, state)
    for rel in sorted(set(have) - set(want)):
        _dirty(out, state)
        shutil.rmtree(out / rel, ignore_errors=True)
        del have[rel]
        summary.removed_steps.append(rel)
        save_state(out, state)
    for rel, step in sorted(want.items(), key=lambda kv: (kv[1]["after"], kv[1]["kind"])):
        cur = have.get(rel)
        if cur is not None and cur["token"] == step["token"] and (out / rel / "change.json").is_file():
            continue
        _dirty(out, state)
        before, after = out / "runs" / step["before"], out / "runs" / step["after"]
        notify(f"change {step['before']} -> {step['after']}")
        try:
            compute_change(before, after, out / rel, wf.change.mmu_m2, wf.change.grid)
        except Exception as exc:  # noqa: BLE001 - recorded; the step is computed again next call
            reason = _one_line(exc)
            summary.failed[rel] = reason
            notify(f"{rel}: failed: {reason}")
            have.pop(rel, None)
            save_state(out, state)
            continue
        have[rel] = step
        summary.new_steps.append(rel)
        save_state(out, state)


def _current(state: dict) -> tuple[list[DateRun], list[Step]]:
    runs = [
        DateRun(dt.date.fromisoformat(s["date"]), Path(s["run"]))
        for s in sorted(state["scenes"].values(), key=lambda s: s["date"] or "")
        if s["status"] == "done"
    ]
    steps = [
        Step(v["kind"], dt.date.fromisoformat(v["before"]), dt.date.fromisoformat(v["after"]), Path(k))
        for k, v in sorted(
            state["steps"].items(), key=lambda kv: (kv[1]["kind"] != "previous", kv[1]["after"])
        )
    ]
    return runs, steps
