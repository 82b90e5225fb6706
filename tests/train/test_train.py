"""Training tiny real models on real sample data: loss falls, runs are tracked, resumable and runnable."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
import torch

from geoseg.config import ClusterConfig, RunConfig
from geoseg.errors import CheckpointError, LabelError, OutputExistsError
from geoseg.models import build_model
from geoseg.models.checkpoint import load_checkpoint
from geoseg.run.job import run_scene
from geoseg.train.config import TrainConfig
from geoseg.train.data import load_training_data
from geoseg.train.job import load_encoder_weights, train_model
from geoseg.train.tracking import list_runs
from tests.conftest import ATLANTA_BUILDINGS, ATLANTA_PAN, DUBAI, S2_LULC, S2_SCENE, few_chips

QUIET = {"notify": lambda m: None}


def pan_config(out, **kw) -> TrainConfig:
    """Single-band uint16 WorldView-2 + 43 SpaceNet footprints: a small building model."""
    settings = dict(
        task="buildings",
        out=out,
        images=[ATLANTA_PAN],
        labels=[ATLANTA_BUILDINGS],
        epochs=3,
        steps_per_epoch=15,
        batch=4,
        size=96,
        lr=3e-3,
        threads=2,
    )
    return TrainConfig(**(settings | kw))


def rows(run_dir) -> list[dict]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def pan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "pan"
    result = train_model(pan_config(out), **QUIET)
    return out, result


def test_training_lowers_the_loss_and_tracks_the_run(pan_run):
    out, result = pan_run
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "metrics.csv",
        "metrics.png",
        "best.pt",
        "last.pt",
        "state.pt",
    }
    r = rows(out)
    assert [int(x["epoch"]) for x in r] == [1, 2, 3]
    assert float(r[-1]["train_loss"]) < float(r[0]["train_loss"])
    assert result.best_score == max(float(x["iou_building"]) for x in r)
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listing = list_runs(out.parent)
    assert [(x.path, x.epochs_done, x.best_score) for x in listing] == [(out, 3, result.best_score)]


def test_checkpoint_records_single_band_input_and_data(pan_run):
    out, result = pan_run
    ckpt = load_checkpoint(out / "best.pt")
    meta = ckpt.meta
    assert (meta.task, meta.in_channels, meta.bands, meta.input_dtype) == ("buildings", 1, ["pan"], "uint16")
    assert [c.name for c in meta.classes] == ["background", "building"]
    assert meta.gsd_m == pytest.approx(0.5, rel=0.01)
    assert len(meta.training_data_sha256) == 64
    assert meta.metrics["val_iou_building"] == pytest.approx(result.best_score)
    # The mean/std are the data's own (uint16 pan counts), not uint8 defaults.
    assert meta.normalization.mean[0] > 255


def test_interrupted_run_resumes_to_the_same_result(tmp_path, pan_run):
    out = tmp_path / "resumed"

    def crash_after_epoch_2(message: str) -> None:
        if message.startswith("epoch 2:"):
            raise Crash

    with pytest.raises(Crash):
        train_model(pan_config(out), notify=crash_after_epoch_2)
    assert [x["epoch"] for x in rows(out)] == ["1", "2"]
    messages = []
    result = train_model(pan_config(out), notify=messages.append)
    assert result.resumed and any("resuming" in m and "epoch 2" in m for m in messages)
    straight = rows(pan_run[0])
    again = rows(out)
    assert [x["epoch"] for x in again] == ["1", "2", "3"]
    for a, b in zip(again, straight, strict=True):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-4)
        assert float(a["iou_building"]) == pytest.approx(float(b["iou_building"]), abs=1e-3)
    # A finished run is not trained again; other settings in the same folder are refused.
    assert train_model(pan_config(out), **QUIET).complete_before
    with pytest.raises(OutputExistsError, match="other settings"):
        train_model(pan_config(out, lr=1e-3), **QUIET)


def test_validation_strip_is_separate_from_training_pixels():
    data = load_training_data(pan_config("unused", val_fraction=0.25))
    (train,), (val,) = data.train, data.val
    assert train.mask.shape[0] == val.mask.shape[0] == 900
    assert train.mask.shape[1] + val.mask.shape[1] == 900 and val.mask.shape[1] == 225
    tb, vb = train.geobox.extent.boundingbox, val.geobox.extent.boundingbox
    assert tb.right == pytest.approx(vb.left)  # adjacent, not overlapping


def test_multispectral_polygons_model_runs_with_geoseg_run(tmp_path, dask_cluster):
    """13-band float Sentinel-2 + named land-use polygons → a checkpoint ``geoseg run`` accepts as is."""
    cfg = TrainConfig(
        task="landcover",
        out=tmp_path / "s2",
        images=[S2_SCENE],
        labels=[S2_LULC],
        class_field="LULC_NAME",
        epochs=2,
        steps_per_epoch=5,
        batch=4,
        size=64,
        scale_range=(1.0, 1.0),
        threads=2,
    )
    train_model(cfg, **QUIET)
    meta = load_checkpoint(cfg.out / "best.pt").meta
    names = ["artificial surface", "cultivated land", "forest", "grassland", "schrubland"]
    assert [c.name for c in meta.classes] == names
    assert meta.in_channels == 13 and meta.bands[:2] == ["b01", "b02"] and meta.input_dtype == "float32"
    out = tmp_path / "run"
    run_scene(
        RunConfig(
            scene=S2_SCENE,
            out=out,
            model=cfg.out / "best.pt",
            device="cpu",
            progress=False,
            cluster=ClusterConfig(scheduler=dask_cluster.scheduler_address),
        ),
        notify=lambda m: None,
    )
    with rasterio.open(out / "landcover.tif") as lc, rasterio.open(S2_SCENE) as src:
        assert (lc.crs, lc.transform, lc.shape) == (src.crs, src.transform, src.shape)
        assert set(np.unique(lc.read(1))) <= set(range(1, 6))
        assert list(json.loads(lc.tags()["CLASS_NAMES"]).values()) == names


def test_chip_folders_train_with_a_colour_table(tmp_path):
    cfg = TrainConfig(
        task="landcover",
        out=tmp_path / "chips",
        chips=few_chips(tmp_path / "dubai"),
        colors=DUBAI / "classes.yaml",
        val_chips="tile_3",
        epochs=1,
        steps_per_epoch=2,
        batch=2,
        size=64,
        threads=2,
    )
    data = load_training_data(cfg)
    assert data.classes == ["building", "land", "road", "vegetation", "water"]
    assert all("tile_3" in c.name for c in data.val) and not any("tile_3" in c.name for c in data.train)
    train_model(cfg, **QUIET)
    meta = load_checkpoint(cfg.out / "best.pt").meta
    assert meta.classes[0].color == "#E3342F" and meta.gsd_m is None


def test_local_encoder_weights_are_loaded(tmp_path):
    torch.manual_seed(1)
    source = build_model("unet", "mobilenet_v2", 3, 2, encoder_depth=3, decoder_channels=[64, 32, 16])
    path = tmp_path / "encoder.pth"
    torch.save(source.encoder.state_dict(), path)
    torch.manual_seed(2)
    target = build_model("unet", "mobilenet_v2", 3, 2, encoder_depth=3, decoder_channels=[64, 32, 16])
    load_encoder_weights(target, path)
    for a, b in zip(source.encoder.state_dict().values(), target.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        load_encoder_weights(target, tmp_path / "junk.pth")


def test_labels_that_miss_the_image_fail_before_any_output(tmp_path):
    import geopandas as gpd

    far = tmp_path / "far.geojson"
    frame = gpd.read_file(ATLANTA_BUILDINGS)
    frame.set_geometry(frame.translate(0, 100_000)).to_file(far, engine="pyogrio")
    out = tmp_path / "never"
    with pytest.raises(LabelError, match="overlaps the image"):
        train_model(pan_config(out, labels=[far]), **QUIET)
    assert not out.exists()


def test_grid_sampler_visits_every_window_once_per_pass():
    from geoseg.train.sampler import GridChipSampler

    data = load_training_data(pan_config("unused"))
    sampler = GridChipSampler(data.train, 256, seed=[0, 1], value_range=data.value_range)
    n = len(sampler.windows)
    assert n == 7 * 5  # 900 x 720 training strip, 256 windows at stride 128, last ones shifted inside
    seen = [sampler._next_window()[1:3] for _ in range(n)]
    assert sorted(seen) == sorted((r, c) for _, r, c, _, _ in sampler.windows)
    x, y = GridChipSampler(data.train, 256, seed=[0, 1], value_range=data.value_range).batch(2)
    assert x.shape == (2, 1, 256, 256) and y.shape == (2, 256, 256)
    x2, _ = GridChipSampler(data.train, 256, seed=[0, 1], value_range=data.value_range).batch(2)
    assert torch.equal(x, x2)  # same seed, same windows and augmentation
