"""Workflow files map onto RunConfig and rerun idempotently."""

from __future__ import annotations

import pytest
import yaml

from geoseg.errors import GeosegError
from geoseg.run.job import run_scene
from geoseg.run.workflow import load_workflow
from tests.conftest import LANDSAT_RGB, ROOT


def test_workflow_runs_then_skips(tmp_path, dask_cluster):
    wf_file = tmp_path / "wf.yaml"
    wf_file.write_text(
        f"name: test\nout_root: out\nscenes:\n  - {LANDSAT_RGB}\n"
        f"parameters:\n  tile: 256\n  overlap: 32\n  progress: false\n"
        f"cluster:\n  scheduler: {dask_cluster.scheduler_address}\n"
    )
    _wf, runs = load_workflow(wf_file)
    assert [r.out for r in runs] == [tmp_path / "out" / LANDSAT_RGB.stem]
    assert runs[0].tile == 256
    first = run_scene(runs[0], notify=lambda m: None)
    assert not first.skipped and (runs[0].out / "landcover.tif").exists()
    second = run_scene(runs[0], notify=lambda m: None)
    assert second.skipped


@pytest.mark.parametrize(
    "text, message",
    [
        ("scenes: [a.tif]\n", "name"),
        ("- 1\n", "mapping"),
        ("name: x\nout_root: o\nscenes: []\ntile: 3\n", "tile"),
    ],
)
def test_invalid_workflow_names_file_and_problem(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(GeosegError, match=message) as err:
        load_workflow(f)
    assert str(f) in str(err.value)


def test_bundled_workflows_point_at_real_files():
    for path in sorted((ROOT / "workflows").glob("*.yaml")):
        if "aoi" in yaml.safe_load(path.read_text()):  # a geoseg monitor workflow (tests/test_monitor.py)
            from geoseg.monitor import load_monitor_workflow
            from geoseg.monitor.scenes import discover

            refs = discover(load_monitor_workflow(path).scenes)
            assert len(refs) == 5 and all(r.path.is_file() and r.problem is None for r in refs), path
            continue
        _, runs = load_workflow(path)
        assert runs and all(r.scene.is_file() and r.model.is_file() for r in runs), path
