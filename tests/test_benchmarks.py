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
    assert set(model_only) == {"tuned", "default", "tuned, engine auto"}  # torch, and geoseg's engine
    for run in model_only.values():
        assert run["report"]["tiles_per_s"] > 0 and run["peak_rss_mib"] > 0
    assert model_only["tuned"]["report"]["engine"] == "torch"
    assert model_only["tuned, engine auto"]["report"]["engine"] == "openvino"
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
    assert "geoseg_over_model_only_same_engine" in scene["ratios"]
    assert 0.5 < scene["label_agreement_geoseg_vs_naive"] <= 1.0

    text = md.read_text()
    assert "python -m benchmarks.run --sizes 512" in text and "test run" in text and "### Ratios" in text
    assert json.loads(md.with_suffix(".json").read_text())["scenes"][0]["tiles"] == 9


PEERS_PYTHON = bench.PEERS_PYTHON
needs_peers_venv = pytest.mark.skipif(
    not PEERS_PYTHON.is_file(), reason=f"no peers venv ({PEERS_PYTHON}); build it with `make peers-venv`"
)


def _side(side, allocator, wall_s, report, **extra):
    return {
        "side": side, "allocator": allocator, "wall_s": wall_s, "peak_rss_mib": 1000.0 + wall_s,
        "peak_rss_by_role_mib": {"main": 900.0}, "max_processes": 1, "malloc_env": {"main": "(none)"},
        "thread_env": {"main": "OMP_NUM_THREADS=2"}, "load_avg_1m": 0.5, "report": report, **extra,
    }  # fmt: skip


def _peers_section():
    """A hand-made peers section: geoseg 10 tiles/s; plain 4 / 5, torchgeo 2 / 2.5, geoai 1 / 1.25 tiles/s."""
    runs = {}
    for name, wall in (("plain", 25.0), ("torchgeo", 50.0), ("geoai", 100.0)):
        for alloc, w in (("tuned", wall), ("default", wall * 1.25)):
            report = {"tiles": 100, "total_s": w - 3, "load_s": 1.0, "predict_s": w - 10}
            if name == "geoai":
                report |= {"infer_s": w - 5, "model_tiles": 120}
            runs[f"{name}_{alloc}"] = _side(
                name, alloc, w, report, peer=name, tiles_per_s=100 / w, megapixels_per_s=1.0,
                geoseg_over_peer=10 / (100 / w), model_tiles=report.get("model_tiles", 100),
                label_agreement_with_geoseg=0.5 if name == "geoai" else 0.99,
            )  # fmt: skip
    return {
        "size": 4096, "scene": "/x/kampala_mirror_4096_v1.tif", "shape": [4096, 4096], "tiles": 100,
        "megapixels": 16.8, "python": "/repo/.venv-peers/bin/python",
        "versions": {"torch": "2.14.1", "torchgeo": "0.8.1", "geoai-py": "0.40.1"},
        "geoseg": _side("geoseg", "workers tuned by geoseg", 10.0, {"total_s": 9.0, "read_s": 1.0,
                        "predict_s": 6.0}, tiles_per_s=10.0, megapixels_per_s=1.7, reused=False),
        "runs": runs,
        "ratios": {"best_peer_default": "plain", "geoseg_over_best_peer_default": 2.5,
                   "best_peer_tuned": "plain", "geoseg_over_best_peer_tuned": 2.0},
    }  # fmt: skip


def test_peers_tables_format_hand_made_results():
    results = {
        "config": {"batch": 8, "tile": 512, "overlap": 64, "warmup": 1, "model_batches": 5,
                   "torch_threads": 2, "workers": 1, "threads_per_worker": 2, "sizes": [2048]},
        "machine": {"cpu": "cpu", "cores": 2, "ram_gib": 8, "os": "linux", "python": "3.11", "torch": "2",
                    "load_avg_at_start": [0.1, 0.1, 0.1]},
        "model": {"path": "/m/landcover_rgb.pt", "kind": "bundled", "sha256": "0" * 64},
        "git": "abc", "started": "t0", "finished": "t1",
        "model_only": {}, "scenes": [], "peers": _peers_section(),
    }  # fmt: skip
    md = bench.format_markdown(results, "python -m benchmarks.run --peers 4096", None)
    assert "### (d) Peers on the 4096² scene" in md
    assert "| 4096² | 2.50 | plain | 2.00 | plain |" in md  # (b) / best peer default, tuned
    assert "| plain | tuned | 25.0 | 4.00 | 2.50 | 1025 | 100 | 22.0 |" in md
    assert "| geoai | default | 125.0 | 0.80 | 12.50 | 1125 | 120 |" in md and "| 0.500 |" in md
    assert "infer 120.0" in md and "torchgeo 0.8.1, geoai-py 0.40.1" in md
    assert "| torchgeo | default | main: (none) |" in md  # peers in the environment table
    assert "divides by 255" in md and "mapped here to the checkpoint's class ids" in md
    plain = bench.format_markdown(results | {"peers": None}, "cmd", None)
    assert "Peers" not in plain and "divides by 255" not in plain


def test_peers_without_peers_python_fails_fast(tmp_path, capsys):
    missing = tmp_path / "no-venv" / "bin" / "python"
    with pytest.raises(SystemExit) as exc:
        bench.main(["--sizes", "512", "--peers", "512", "--peers-python", str(missing),
                    "--cache", str(tmp_path / "cache")])  # fmt: skip
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "make peers-venv" in err
    assert not (tmp_path / "cache").exists()  # nothing was generated or run


def test_label_agreement_maps_class_index_to_ids(tmp_path):
    profile = {"driver": "GTiff", "width": 4, "height": 1, "count": 1, "dtype": "uint8", "nodata": 0}
    ids, index = tmp_path / "ids.tif", tmp_path / "index.tif"
    with rasterio.open(ids, "w", **profile) as dst:
        dst.write(np.array([[1, 2, 3, 0]], np.uint8), 1)
    with rasterio.open(index, "w", **profile) as dst:
        dst.write(np.array([[0, 1, 1, 4]], np.uint8), 1)
    lut = np.zeros(256, np.uint8)
    lut[:5] = [1, 2, 3, 4, 5]
    assert bench.label_agreement(ids, index, b_lut=lut) == pytest.approx(2 / 3)  # pixel 4: nodata in ids
    assert bench.label_agreement(ids, index) == 0.0  # raw indexes: off by one everywhere


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_peers_venv
def test_benchmark_with_peers_runs_all_peers(tmp_path):
    md = tmp_path / "RESULTS.md"
    results = bench.main(
        ["--sizes", "512", "--peers", "512", "--tile", "256", "--overlap", "32", "--batch", "4",
         "--model-batches", "1", "--torch-threads", "1", "--threads-per-worker", "1",
         "--cache", str(tmp_path / "cache"), "--results", str(md)]
    )  # fmt: skip
    peers = results["peers"]
    assert peers["size"] == 512 and peers["tiles"] == 9 and peers["geoseg"]["reused"]
    assert peers["geoseg"]["wall_s"] == results["scenes"][0]["sides"]["geoseg"]["wall_s"]  # not run again
    assert set(peers["runs"]) == {
        f"{p}_{a}" for p in ("plain", "torchgeo", "geoai") for a in ("tuned", "default")
    }
    for key, run in peers["runs"].items():
        assert run["tiles_per_s"] > 0 and run["peak_rss_mib"] > 0, key
        assert run["tiles_per_s"] == pytest.approx(9 / run["wall_s"])  # grid tiles per command wall second
        assert run["report"]["tiles"] == 9 and 0 < run["report"]["total_s"] < run["wall_s"]
        expected = bench._format_env(bench.ALLOCATOR_ENV) if run["allocator"] == "tuned" else "(none)"
        assert run["malloc_env"]["main"] == expected and run["report"]["malloc_env"] == (
            bench.ALLOCATOR_ENV if run["allocator"] == "tuned" else {}
        )
    for alloc in ("tuned", "default"):
        for name in ("plain", "torchgeo"):
            assert peers["runs"][f"{name}_{alloc}"]["label_agreement_with_geoseg"] > 0.9
        assert peers["runs"][f"geoai_{alloc}"]["model_tiles"] >= 9
        assert 0 <= peers["runs"][f"geoai_{alloc}"]["label_agreement_with_geoseg"] <= 1
        assert peers["ratios"][f"geoseg_over_best_peer_{alloc}"] > 0
    assert peers["versions"]["torchgeo"] and peers["versions"]["geoai-py"]

    text = md.read_text()
    assert "### (d) Peers on the 512² scene" in text and "(b) / best peer tuned" in text
    assert "| geoai | default |" in text and "divides by 255" in text
    assert json.loads(md.with_suffix(".json").read_text())["peers"]["tiles"] == 9


def test_peer_running_fewer_model_tiles_than_the_grid_aborts(tmp_path, monkeypatch):
    def fake_run(name, report):
        return bench.SideRun(name, "tuned", 2.0, 100.0, {}, 1, {}, {}, 0.0, report)

    monkeypatch.setattr(bench, "peer_versions", lambda python: {})
    monkeypatch.setattr(bench, "class_index_lut", lambda model: np.zeros(256, np.uint8))
    monkeypatch.setattr(bench, "check_raster", lambda path, shape: None)
    monkeypatch.setattr(bench, "label_agreement", lambda a, b, b_lut=None: 1.0)
    reports = {"plain": {"tiles": 9}, "torchgeo": {"tiles": 9, "chips": 0}}  # torchgeo on a one-tile scene
    monkeypatch.setattr(
        bench, "run_peer", lambda cfg, model, scene, name, out, tuned, work: fake_run(name, reports[name])
    )
    cfg = bench.BenchConfig(sizes=[512], peers=512)
    with pytest.raises(
        bench.BenchmarkError, match="torchgeo ran the model on 0 tiles, fewer than the grid's 9"
    ):
        bench.run_peers(cfg, tmp_path / "m.pt", tmp_path / "s.tif", (512, 512), 9,
                        fake_run("geoseg", {}), tmp_path / "geoseg", tmp_path, True)  # fmt: skip


def test_gpu_benchmark_variants_and_recorded_results_format():
    from benchmarks import gpu

    assert gpu.parse_variant("fp16:cl:tune") == ("fp16", True, True)
    assert gpu.parse_variant("fp32:nchw:notune") == ("fp32", False, False)
    with pytest.raises(ValueError, match="bad variant"):
        gpu.parse_variant("fp8:cl:tune")
    runs = json.loads((bench.ROOT / "benchmarks" / "RESULTS_gpu.json").read_text())
    md = gpu.format_markdown(runs)
    assert md.count("## Run ") == len(runs) == 2
    rows = [line for line in md.splitlines() if line.startswith("| 16384² |")]
    assert len(rows) == sum(1 for r in runs for g in r["geoseg"] if g["size"] == 16384)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_benchmark_script_runs_on_the_cpu(tmp_path, monkeypatch):
    """benchmarks/gpu.py's whole flow (model-only rows, geoseg run end to end, results) with --device cpu."""
    from benchmarks import gpu

    monkeypatch.setenv("GEOSEG_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    gpu.main(
        ["--out", str(out), "--device", "cpu", "--sizes", "1024", "--batches", "2", "--variants",
         "fp32:cl:notune", "--layouts", "1x2x4", "--no-resnet18", "--no-startup", "--budget-s", "600"]
    )  # fmt: skip
    results = json.loads((out / "gpu.json").read_text())
    assert results["errors"] == [] and results["skipped"] == []
    (row,) = results["model_only"]
    assert row["tiles_per_s"] > 0 and row["device"] == "cpu" and row["batch"] == 2
    (run,) = results["geoseg"]
    assert run["tiles"] == 9 and run["timing"]["tiles_predicted"] == 9
    assert "| 1024² | 1 × 2 | 4 |" in (out / "RESULTS_gpu.md").read_text()
