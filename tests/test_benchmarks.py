"""The benchmark suite's short form: all three sides on one small generated scene (no timing thresholds)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import rasterio

from benchmarks import run as bench
from benchmarks.scenes import SOURCE, generate_scene, mirror_index

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_mirror_index_reflects_at_edges():
    assert mirror_index(7, 3).tolist() == [0, 1, 2, 2, 1, 0, 0]
    assert mirror_index(3, 3, start=5).tolist() == [0, 0, 1]


def test_generated_scene_mirrors_real_texture(tmp_path):
    path = generate_scene(tmp_path / "scene.tif", 2304)
    with rasterio.open(path) as ds, rasterio.open(SOURCE) as src:
        assert (ds.count, ds.height, ds.width, ds.dtypes[0]) == (3, 2304, 2304, "uint8")
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
        assert ds.crs == src.crs and ds.transform == src.transform
        edge = ds.read(window=((2048 - 64, 2048 + 64), (0, 256)))
        src_edge = src.read(window=((2048 - 64, 2048), (0, 256)))
    assert np.array_equal(edge[:, :64], src_edge)
    assert np.array_equal(edge[:, 64:], src_edge[:, ::-1])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_benchmark_runs_all_sides(tmp_path):
    md = tmp_path / "RESULTS.md"
    results = bench.main(
        ["--sizes", "512", "--tile", "256", "--overlap", "32", "--batch", "4", "--model-batches", "1",
         "--cache", str(tmp_path / "cache"), "--results", str(md), "--note", "test run"]
    )  # fmt: skip
    assert (tmp_path / "cache" / "kampala_mirror_512_v1.tif").is_file()

    model_only = results["model_only"]
    assert set(model_only) == {"tuned", "default"}
    for run in model_only.values():
        assert run["report"]["tiles_per_s"] > 0 and run["peak_rss_mib"] > 0
    assert model_only["tuned"]["malloc_env"]["main"] == bench._format_env(bench.ALLOCATOR_ENV)
    assert model_only["default"]["malloc_env"]["main"] == "(none)"

    (scene,) = results["scenes"]
    assert scene["tiles"] == 9  # 512 px with 256 px tiles, 32 px overlap: offsets 0, 224, 256 per axis
    sides = scene["sides"]
    assert set(sides) == {"geoseg", "naive_tuned", "naive_default"}
    for run in sides.values():
        assert run["wall_s"] > 0 and run["tiles_per_s"] > 0 and run["peak_rss_mib"] > 0
    timing = sides["geoseg"]["report"]
    assert timing["tiles"] == 9 and timing["tiles_predicted"] + timing["tiles_skipped"] == 9
    assert sides["geoseg"]["peak_rss_by_role_mib"].get("worker", 0) > 0  # Dask workers were sampled
    assert "MALLOC_MMAP_MAX_=0" in sides["geoseg"]["malloc_env"]["worker"]
    assert sides["naive_tuned"]["report"]["tiles"] == 9
    for value in scene["ratios"].values():
        assert isinstance(value, float) and math.isfinite(value) and value > 0
    assert 0.5 < scene["label_agreement_geoseg_vs_naive"] <= 1.0

    text = md.read_text()
    assert "python -m benchmarks.run --sizes 512" in text and "test run" in text and "### Ratios" in text
    assert json.loads(md.with_suffix(".json").read_text())["scenes"][0]["tiles"] == 9
