"""The torch-free OpenVINO predictor that CPU workers run once a checkpoint's conversion is cached."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg.config import ClusterConfig
from geoseg.inference.openvino import WORKER_TORCH_ENV, predictor_for, runs_without_torch
from geoseg.run.cluster import ClusterStart
from geoseg.run.graph import ModelTask, predict_batch
from tests.conftest import KAMPALA, LANDCOVER_MODEL
from tiles import TileGrid

pytest.importorskip("openvino")


@pytest.fixture()
def ov_cache(tmp_path, monkeypatch):
    """A private GEOSEG_CACHE_DIR holding the bundled model's OpenVINO conversion (made by the torch path)."""
    from geoseg.inference.engines import OpenVinoEngine
    from geoseg.models.checkpoint import load_checkpoint

    monkeypatch.setenv("GEOSEG_CACHE_DIR", str(tmp_path))
    runs_without_torch.cache_clear()
    assert not runs_without_torch(str(LANDCOVER_MODEL), "cpu", "auto")  # nothing converted yet
    assert OpenVinoEngine(load_checkpoint(LANDCOVER_MODEL), threads=1).converted
    runs_without_torch.cache_clear()
    yield tmp_path
    runs_without_torch.cache_clear()


def test_probabilities_sum_to_one_for_any_pixel_dtype(ov_cache):
    """The graph's softmax gives per-pixel distributions over the classes; float32 pixels of the same
    values compile a second graph and give the same probabilities."""
    with rasterio.open(KAMPALA) as src:
        x = src.read(window=Window(700, 400, 256, 256))[None]
    v = np.ones((1, 256, 256), bool)
    v[0, :, :30] = False
    pred = predictor_for(str(LANDCOVER_MODEL), "cpu", 1, "auto")
    assert pred is not None
    p = pred.predict(x, v)
    assert p.dtype == np.float16 and p.shape == (1, 5, 256, 256)
    np.testing.assert_allclose(p.astype(np.float32).sum(1), 1.0, atol=3e-3)
    np.testing.assert_array_equal(pred.predict(x.astype(np.float32), v), p)


def test_which_runs_go_without_torch(ov_cache):
    path = str(LANDCOVER_MODEL)
    assert runs_without_torch(path, "cpu", "auto") and runs_without_torch(path, "cpu", "openvino")
    assert not runs_without_torch(path, "cpu", "torch")
    assert not runs_without_torch(path, "cpu", "onnx")
    assert not runs_without_torch(path, "cuda", "auto")


def test_matches_the_torch_predictor_on_real_tiles_in_a_process_without_torch(ov_cache, tmp_path):
    """In a fresh process the torch-free predictor runs the cached model without importing torch, and
    gives the probabilities of geoseg.inference.predictor's Predictor with the same OpenVINO model."""
    import subprocess

    from geoseg.inference.predictor import Predictor
    from geoseg.models.checkpoint import load_checkpoint

    with rasterio.open(KAMPALA) as src:  # 288x320: not multiples of 32, so padding is exercised
        x = np.stack([src.read(window=Window(c, r, 320, 288)) for r, c in [(300, 500), (1200, 1400)]])
    v = np.ones((2, 288, 320), bool)
    v[1, :40] = False  # nodata rows
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "v.npy", v)
    script = (
        "import sys, numpy as np; from geoseg.inference.openvino import predictor_for; "
        f"p = predictor_for({str(LANDCOVER_MODEL)!r}, 'cpu', 2, 'auto'); "
        f"x, v = np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'v.npy')!r}); "
        "np.save(sys.argv[1], p.predict(x, v)); print(p.engine.name, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "p.npy")], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["openvino", "False"]
    p = np.load(tmp_path / "p.npy").astype(np.float32)
    ref = Predictor(load_checkpoint(LANDCOVER_MODEL), __import__("torch").device("cpu"), engine="openvino")
    p_ref = ref.predict(x, v).astype(np.float32)
    assert p.shape == p_ref.shape == (2, 5, 288, 320)
    assert np.abs(p - p_ref).max() < 1e-3
    assert (p.argmax(1) == p_ref.argmax(1)).mean() > 0.9999


def test_torch_free_workers_predict_without_importing_torch(ov_cache):
    """An embedded worker started for a torch-free run skips torch at start-up and in predict_batch."""
    grid = TileGrid(1024, 1024, 256, 32)
    windows = [(i, grid[i]) for i in range(4)]
    model = ModelTask(str(LANDCOVER_MODEL), "cpu", 1, (1, 2, 3, 4, 5), "auto")
    with ClusterStart(ClusterConfig(workers=1, threads_per_worker=1)) as cluster:
        cluster.start(torch_free=True)
        with cluster.client() as client:
            envs = client.run(lambda: __import__("os").environ.get(WORKER_TORCH_ENV))
            res = client.submit(predict_batch, str(KAMPALA), windows, [1, 2, 3], None, model).result()
            torch_loaded = client.run(lambda: "torch" in __import__("sys").modules)
    assert list(envs.values()) == ["0"]
    assert res.stats.engine == "openvino" and res.stats.predicted == 4
    assert all(p.shape == (5, 256, 256) and p.dtype == np.float16 for p in res.probs.values())
    assert list(torch_loaded.values()) == [False]
