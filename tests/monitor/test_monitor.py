"""``geoseg monitor``: real NAIP / Sentinel-2 scenes, real processes, real signals, files read back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pystac
import pytest
import rasterio
import yaml

from geoseg.monitor import MonitorWorkflowError, load_monitor_workflow, run_monitor
from geoseg.monitor.scenes import discover
from tests.conftest import ROOT, SAMPLES

NAIP = sorted((SAMPLES / "naip").glob("m_*.tif"))  # 2009, 2012, 2015, 2018, 2020
DATES = ["2009-08-18", "2012-07-31", "2015-09-26", "2018-07-16", "2020-08-31"]
AOI = [487000, 5206500, 488500, 5208000]  # 1.5 km x 1.5 km (300 x 300 pixels) inside every NAIP date
OUTPUTS = ("history.gpkg", "timeseries.csv", "timeseries.png", "catalog.json")


def write_workflow(tmp: Path, scenes: Path, out: Path, aoi=AOI, **extra) -> Path:
    doc = {
        "name": "naip-test",
        "out": str(out),
        "aoi": {"bbox": aoi, "crs": "EPSG:26914"},
        "scenes": {"folder": str(scenes), "glob": "m_*.tif", "date_regex": r"_(\d{8})\.tif$"},
        "bands": ["red", "green", "blue", "nir"],
        "change": {"mmu_m2": 500},
        "cluster": {"processes": False},  # small AOIs: one in-process worker starts fastest
    } | extra
    path = tmp / f"wf_{out.name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def add_scenes(folder: Path, *indexes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in indexes:
        shutil.copy2(NAIP[i], folder / NAIP[i].name)


def monitor(wf: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "geoseg", "monitor", str(wf), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def summary(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def ymd(column) -> list[str]:
    return list(column.dt.strftime("%Y-%m-%d"))


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in (*OUTPUTS, "monitor_state.json")}


def history(out: Path) -> dict[str, list]:
    """The history's content, order-independent (to compare runs that wrote it at different times)."""
    frame = pyogrio.read_dataframe(out / "history.gpkg", layer="landcover_change")
    frame["wkb"] = frame.geometry.normalize().to_wkb()
    cols = ["date_before", "date_after", "from_class", "to_class", "area_m2", "wkb"]
    rows = sorted(tuple(str(v) for v in r) for r in frame[cols].itertuples(index=False))
    return {"rows": rows, "timeseries": (out / "timeseries.csv").read_text().splitlines()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Three dates run uninterrupted, in this process (the history other tests must reproduce)."""
    tmp = tmp_path_factory.mktemp("reference")
    add_scenes(tmp / "scenes", 0, 1, 2)
    wf = load_monitor_workflow(write_workflow(tmp, tmp / "scenes", tmp / "out"))
    result = run_monitor(wf, notify=lambda m: None)
    assert result.new_dates == DATES[:3] and result.exit_code == 0
    return tmp / "out"


def test_three_dates_then_a_fourth_then_nothing(tmp_path, reference):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    shutil.copytree(reference.parent / "scenes", scenes)  # three dates done (mtimes kept)
    shutil.copytree(reference, out)
    wf = write_workflow(tmp_path, scenes, out)
    state = json.loads((out / "monitor_state.json").read_text())
    assert sorted(state["steps"]) == [f"changes/{DATES[0]}_{DATES[1]}", f"changes/{DATES[1]}_{DATES[2]}"]
    runs_before = {d: (out / "runs" / d / "run.json").stat().st_mtime_ns for d in DATES[:3]}

    add_scenes(scenes, 3)
    second = monitor(wf, "--json")
    assert second.returncode == 0, second.stderr
    s = summary(second)
    assert s["new_dates"] == [DATES[3]]  # exactly one new run ...
    assert s["new_steps"] == [f"changes/{DATES[2]}_{DATES[3]}"]  # ... and one new change step
    assert s["removed_steps"] == [] and s["dates"] == DATES[:4] and s["steps"] == 3
    assert {d: (out / "runs" / d / "run.json").stat().st_mtime_ns for d in DATES[:3]} == runs_before
    layer = pyogrio.read_dataframe(out / "history.gpkg", layer="landcover_change")
    assert sorted(set(layer["date_after"].dt.strftime("%Y-%m-%d"))) == DATES[1:4]
    assert (layer["area_m2"] >= 500 - 1e-6).all()  # the MMU held in every step
    before = snapshot(out)

    third = monitor(wf)
    assert third.returncode == 0, third.stderr
    assert "nothing new" in third.stdout
    assert snapshot(out) == before  # history, plots, catalog and state byte-identical

    # the outputs read back: per-date areas, the STAC catalog of every run and change folder
    ts = (out / "timeseries.csv").read_text().splitlines()
    assert ts[0].startswith("date,class_id,class_name,area_m2")
    assert {row.split(",")[0] for row in ts[1:]} == set(DATES[:4])
    cat = pystac.Catalog.from_file(str(out / "catalog.json"))
    items = list(cat.get_items())
    assert len(items) == 4 + 3
    run_items = sorted((i for i in items if not i.id.startswith("change")), key=lambda i: i.datetime)
    assert [i.datetime.date().isoformat() for i in run_items] == DATES[:4]  # STAC datetime = acquisition
    with rasterio.open(out / "inputs" / DATES[0] / f"{NAIP[0].stem}.tif") as src:  # the clip the run read
        assert src.bounds.left >= AOI[0] - 5 and src.bounds.right <= AOI[2] + 5
        assert src.width * src.height <= 302 * 302


def test_late_older_date_recomputes_only_its_steps(tmp_path):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    add_scenes(scenes, 0, 3)
    wf = load_monitor_workflow(write_workflow(tmp_path, scenes, out))
    run_monitor(wf, notify=lambda m: None)
    kept = {d: (out / "runs" / d / "run.json").stat().st_mtime_ns for d in (DATES[0], DATES[3])}
    add_scenes(scenes, 2)  # 2015 arrives after 2018 was processed
    result = run_monitor(wf, notify=lambda m: None)
    assert result.new_dates == [DATES[2]]
    assert result.removed_steps == [f"changes/{DATES[0]}_{DATES[3]}"]
    assert sorted(result.new_steps) == [f"changes/{DATES[0]}_{DATES[2]}", f"changes/{DATES[2]}_{DATES[3]}"]
    assert not (out / "changes" / f"{DATES[0]}_{DATES[3]}").exists()
    assert {d: (out / "runs" / d / "run.json").stat().st_mtime_ns for d in kept} == kept
    layer = pyogrio.read_dataframe(out / "history.gpkg", layer="landcover_change", read_geometry=False)
    pairs = set(zip(ymd(layer["date_before"]), ymd(layer["date_after"]), strict=True))
    assert pairs == {(DATES[0], DATES[2]), (DATES[2], DATES[3])}

    st = (scenes / NAIP[3].name).stat()  # the 2018 file is replaced (e.g. a reprocessed delivery)
    os.utime(scenes / NAIP[3].name, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    redo = run_monitor(wf, notify=lambda m: None)
    assert redo.new_dates == [DATES[3]] and redo.new_steps == [f"changes/{DATES[2]}_{DATES[3]}"]
    assert (out / "runs" / DATES[0] / "run.json").stat().st_mtime_ns == kept[DATES[0]]


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the monitor call finished before the test could interrupt it"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def _done_dates(out: Path) -> int:
    try:
        state = json.loads((out / "monitor_state.json").read_text())
    except (OSError, ValueError):
        return 0
    return sum(s["status"] == "done" for s in state["scenes"].values())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_call_resumes_to_the_same_history(tmp_path, reference, sig):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    add_scenes(scenes, 0, 1, 2)
    wf = write_workflow(tmp_path, scenes, out)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "geoseg", "monitor", str(wf)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for(lambda: _done_dates(out) >= 1, proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) != 0
    assert not (out / "history.gpkg").exists()  # killed before the end: no history yet
    resumed = monitor(wf, "--json")
    assert resumed.returncode == 0, resumed.stderr
    s = summary(resumed)
    assert 1 <= len(s["new_dates"]) <= 2 and s["dates"] == DATES[:3]
    assert history(out) == history(reference)
    leftovers = [
        p.name for d in (out, out / "runs", out / "changes") for p in d.iterdir() if ".partial-" in p.name
    ]
    assert leftovers == []


def test_concurrent_calls_one_runs_the_other_exits(tmp_path, reference):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    add_scenes(scenes, 0, 1, 2)
    wf = write_workflow(tmp_path, scenes, out)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [sys.executable, "-m", "geoseg", "monitor", str(wf)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lock = out / ".monitor.lock"
    _wait_for(lambda: lock.exists() and lock.read_text().strip() == str(first.pid), first)
    second = monitor(wf)  # while the first holds the lock
    waiting = subprocess.Popen(
        [sys.executable, "-m", "geoseg", "monitor", str(wf), "--wait", "--json"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _out1, err1 = first.communicate(timeout=240)
    assert first.returncode == 0, err1
    assert second.returncode == 75
    assert "another geoseg monitor call" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    out3, err3 = waiting.communicate(timeout=240)
    assert waiting.returncode == 0, err3
    assert json.loads(out3)["nothing_new"] is True  # it waited, then found everything done
    assert history(out) == history(reference)


def test_corrupt_and_outside_scenes_are_recorded_and_do_not_block(tmp_path):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    add_scenes(scenes, 0, 1)
    corrupt = scenes / "m_4709963_se_14_1_20160601.tif"
    corrupt.write_bytes(NAIP[2].read_bytes()[:20000])  # a truncated download
    far = scenes / "m_0000000_se_14_1_20170601.tif"  # a real scene of another place
    with rasterio.open(NAIP[3]) as src:
        t = src.transform
        profile = src.profile | {"transform": rasterio.Affine(t.a, t.b, t.c, t.d, t.e, t.f + 4000)}
        with rasterio.open(far, "w", **profile) as dst:
            dst.write(src.read())
    (scenes / "m_notadate.tif").write_bytes(b"")
    wf = write_workflow(tmp_path, scenes, out)
    proc = monitor(wf, "--json")
    assert proc.returncode == 1, proc.stderr
    s = summary(proc)
    assert s["new_dates"] == DATES[:2] and s["steps"] == 1
    assert set(s["failed"]) == {corrupt.name, "m_notadate.tif"}
    assert str(corrupt) in s["failed"][corrupt.name] and "\n" not in s["failed"][corrupt.name]
    assert "no date" in s["failed"]["m_notadate.tif"]
    assert s["skipped"] == {far.name: "no overlap with the AOI"}
    state = json.loads((out / "monitor_state.json").read_text())
    assert state["scenes"][corrupt.name]["status"] == "failed"

    workflow = load_monitor_workflow(wf)
    again = run_monitor(workflow, notify=lambda m: None)  # unchanged failed scenes are not retried
    assert again.exit_code == 0 and again.nothing_new
    assert set(again.not_retried) == {corrupt.name, far.name, "m_notadate.tif"}

    shutil.copy(NAIP[2], corrupt)  # the download is repeated: the file changed, so it is retried
    fixed = run_monitor(workflow, notify=lambda m: None)
    assert fixed.exit_code == 0 and fixed.failed == {}
    assert fixed.new_dates == ["2016-06-01"]
    assert fixed.new_steps == [f"changes/{DATES[1]}_2016-06-01"]


def test_sentinel2_cloudy_dates_are_skipped_not_change(tmp_path):
    wf = load_monitor_workflow(ROOT / "workflows" / "sentinel2_eolearn.yaml")
    wf = wf.model_copy(update={"out": tmp_path / "s2"})
    result = run_monitor(wf, notify=lambda m: None)
    assert result.exit_code == 0
    assert sorted(result.skipped) == ["eolearn_s2l1c_20150731.tif", "eolearn_s2l1c_20150820.tif"]
    assert all(r.startswith("fully cloudy") for r in result.skipped.values())
    assert result.dates == ["2015-07-11", "2015-08-30", "2015-09-09"]
    layer = pyogrio.read_dataframe(
        tmp_path / "s2" / "history.gpkg", layer="landcover_change", read_geometry=False
    )
    dates = set(layer["date_before"].dt.strftime("%Y-%m-%d")) | set(
        layer["date_after"].dt.strftime("%Y-%m-%d")
    )
    assert not dates & {"2015-07-31", "2015-08-20"}
    with rasterio.open(tmp_path / "s2" / "runs" / "2015-07-11" / "landcover.tif") as src:
        classes = src.read(1)
    assert (classes == 0).any() and (classes > 0).any()  # pixels outside the AOI polygon stay nodata
    assert np.isin(np.unique(classes), [0, 1, 2, 3, 4, 5]).all()


def test_stac_item_collection_source(tmp_path):
    items = []
    for path, day in zip(NAIP[:2], DATES[:2], strict=True):
        item = pystac.Item(
            id=path.stem, geometry=None, bbox=None, properties={},
            datetime=__import__("datetime").datetime.fromisoformat(f"{day}T17:00:00+00:00"),
        )  # fmt: skip
        item.add_asset("image", pystac.Asset(href=str(path), media_type=pystac.MediaType.GEOTIFF))
        items.append(item)
    (tmp_path / "items.json").write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    doc = yaml.safe_load(write_workflow(tmp_path, tmp_path, tmp_path / "o").read_text())
    doc["scenes"] = {"stac": "items.json", "asset": "image"}
    (tmp_path / "stac.yaml").write_text(yaml.safe_dump(doc))
    wf = load_monitor_workflow(tmp_path / "stac.yaml")
    refs = discover(wf.scenes)
    assert [r.date.isoformat() for r in refs] == DATES[:2]
    assert [r.path for r in refs] == NAIP[:2] and all(r.problem is None for r in refs)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"aoi": {"bbox": [1, 2, 0, 3]}}, "aoi: bbox must be xmin"),
        ({"scenes": {"folder": "."}, "modle": "x"}, "modle: Extra inputs are not permitted"),
        ({"change": {"mmu_m2": -1}}, "change.mmu_m2: Input should be greater than or equal to 0"),
        ({"scenes": {"folder": "nowhere"}}, "scenes.folder: no such folder"),
        ({"scenes": {"folder": ".", "date_regex": "[0-9]{8}"}}, "scenes: date_regex needs one group"),
        ({"run": {"tile": 100}}, "run: tile: tile must be a multiple of 32"),
        ({"run": {"scene": "x.tif"}}, "run: scene is set by the monitor"),
        (
            {"model": str(ROOT / "geoseg/checkpoints/buildings_rgb.pt")},
            "model: .*buildings_rgb.pt is a buildings model, not a landcover one",
        ),
    ],
)
def test_bad_workflow_is_one_line_naming_the_key(tmp_path, edit, message):
    doc = yaml.safe_load(write_workflow(tmp_path, tmp_path, tmp_path / "o").read_text()) | edit
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(MonitorWorkflowError, match=message.replace("(", r"\(")):
        load_monitor_workflow(path)


def test_bad_workflow_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nout: o\naoi: {bbox: [0, 0, 1, 1]}\nscenes: {folder: .}\nbands: 3\n")
    proc = monitor(path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}: bands") and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_against_first_and_per_date_landcover_layers(tmp_path):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    add_scenes(scenes, 0, 1, 4)
    extra = {"change": {"mmu_m2": 500, "against_first": True}, "history_landcover": True}
    wf = load_monitor_workflow(
        write_workflow(tmp_path, scenes, out, aoi=[487000, 5206500, 488000, 5207500], **extra)
    )
    result = run_monitor(wf, notify=lambda m: None)
    assert sorted(result.new_steps) == [
        f"changes/{DATES[0]}_{DATES[1]}",
        f"changes/{DATES[1]}_{DATES[4]}",
        f"changes_since_first/{DATES[0]}_{DATES[4]}",
    ]
    layers = dict(pyogrio.list_layers(out / "history.gpkg"))
    assert {"landcover_change", "landcover_change_since_first", "landcover"} <= set(layers)
    first = pyogrio.read_dataframe(
        out / "history.gpkg", layer="landcover_change_since_first", read_geometry=False
    )
    assert set(ymd(first["date_before"])) == {DATES[0]} and set(ymd(first["date_after"])) == {DATES[4]}
    lc = pyogrio.read_dataframe(out / "history.gpkg", layer="landcover", read_geometry=False)
    assert sorted(set(ymd(lc["date"]))) == [DATES[0], DATES[1], DATES[4]]
    import sqlite3

    with sqlite3.connect(out / "history.gpkg") as con:
        styles = dict(con.execute("SELECT f_table_name, styleQML FROM layer_styles WHERE useAsDefault = 1"))
    assert 'startField="date_before"' in styles["landcover_change"]  # QGIS temporal controller settings
    assert 'startField="date"' in styles["landcover"]


def test_checkpoint_model_runs_through_geoseg_run(tmp_path):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    add_scenes(scenes, 0, 1)
    extra = {
        "model": str(ROOT / "geoseg" / "checkpoints" / "landcover_rgb.pt"),
        "bands": ["nir", "red", "green", "blue"],  # names, not positions: the model reads red, green, blue
        "run": {"resample": False, "tile": 128, "overlap": 16},
    }
    wf = load_monitor_workflow(
        write_workflow(tmp_path, scenes, out, aoi=[487000, 5206500, 487500, 5207000], **extra)
    )
    result = run_monitor(wf, notify=lambda m: None)
    assert result.exit_code == 0 and result.new_dates == DATES[:2] and result.steps == 1
    item = json.loads((out / "runs" / DATES[0] / "run.json").read_text())
    assert item["properties"]["datetime"].startswith(DATES[0])
    assert item["properties"]["geoseg:parameters"]["bands"] == [2, 3, 4]
    assert (out / "changes" / f"{DATES[0]}_{DATES[1]}" / "change.json").is_file()


def test_buildings_mapped_too_give_building_change_layers(tmp_path):
    """``buildings_model``: each date's run maps land cover and buildings from one read, and the history
    gets the building change layers of every step with their dates (QGIS temporal style)."""
    scenes = tmp_path / "scenes"
    add_scenes(scenes, 0, 4)
    path = write_workflow(tmp_path, scenes, tmp_path / "out", buildings_model="baseline:buildings")
    result = run_monitor(load_monitor_workflow(path), notify=lambda m: None)
    assert result.exit_code == 0 and result.new_dates == [DATES[0], DATES[4]]
    out = tmp_path / "out"
    run = json.loads((out / "runs" / DATES[0] / "run.json").read_text())
    assert [m["metadata"]["task"] for m in run["properties"]["geoseg:model"]["models"]] == [
        "landcover",
        "buildings",
    ]
    layers = {name for name, _ in pyogrio.list_layers(out / "history.gpkg")}
    assert {"landcover_change", "buildings_new", "buildings_removed", "buildings_changed"} <= layers
    step = out / "changes" / f"{DATES[0]}_{DATES[4]}" / "change.gpkg"
    found = 0
    for name in ("buildings_new", "buildings_removed"):
        frame = pyogrio.read_dataframe(out / "history.gpkg", layer=name)
        found += len(frame)
        assert len(frame) == len(pyogrio.read_dataframe(step, layer=name))
        assert ymd(frame["date_after"]) == [DATES[4]] * len(frame)
    assert found > 0  # eleven years of a farming quad: footprints come and go
    styles = pyogrio.read_dataframe(out / "history.gpkg", layer="layer_styles", read_geometry=False)
    qml = styles.set_index("f_table_name").loc["buildings_new", "styleQML"]
    assert 'startField="date_before"' in qml
    with pytest.raises(MonitorWorkflowError, match="buildings_model"):
        bad = write_workflow(tmp_path, scenes, tmp_path / "bad", buildings_model="baseline:roads")
        load_monitor_workflow(bad)
