"""The command line in a subprocess: a real end-to-end run, and one-line errors on bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio

from tests.conftest import ALBERS_INT16, ATLANTA_BUILDINGS, ATLANTA_PAN, LANDCOVER_MODEL


def geoseg(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geoseg", *args], capture_output=True, text=True, timeout=timeout
    )


def test_cli_runs_end_to_end(tmp_path, kampala_crop):
    out = tmp_path / "out"
    res = geoseg(
        "run", str(kampala_crop), "--out", str(out), "--tile", "256", "--overlap", "32", "--batch", "4"
    )
    assert res.returncode == 0, res.stderr
    # without --model: both bundled products from one read
    assert {p.name for p in out.iterdir()} == {
        "landcover.tif",
        "landcover.tif.aux.xml",  # class names as GDAL categories
        "buildings.tif",
        "geoseg.gpkg",
        "run.json",
    }
    assert "tile" in res.stderr  # the progress bar counts tiles
    with rasterio.open(kampala_crop) as src, rasterio.open(out / "landcover.tif") as lc:
        assert (lc.crs, lc.transform, lc.shape) == (src.crs, src.transform, src.shape)
    # A second run with the same inputs does nothing and says so.
    again = geoseg(
        "run", str(kampala_crop), "--out", str(out), "--tile", "256", "--overlap", "32", "--batch", "4"
    )
    assert again.returncode == 0 and "already complete" in again.stderr


def _no_crs_tif(path):
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as dst:
        dst.write(np.zeros((3, 64, 64), np.uint8))
    return path


@pytest.mark.parametrize(
    "make_scene, expected",
    [
        (lambda d: d / "missing.tif", "no such file"),
        (lambda d: (d / "notes.tif").write_text("not a raster") and d / "notes.tif", "not a raster"),
        (lambda d: _no_crs_tif(d / "nocrs.tif"), "no CRS"),
        (lambda d: ATLANTA_PAN, "1 band(s) but the model expects 3"),
        (lambda d: ALBERS_INT16, "data type is int16"),
    ],
    ids=["missing", "not-a-raster", "no-crs", "band-count", "dtype"],
)
def test_bad_input_fails_with_one_line_and_no_output(tmp_path, make_scene, expected):
    scene = make_scene(tmp_path)
    out = tmp_path / "out"
    res = geoseg("run", str(scene), "--out", str(out), "--model", str(LANDCOVER_MODEL), timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and str(scene) in lines[0] and expected in lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".out*"))


def test_invalid_option_is_one_line(tmp_path, kampala_crop):
    res = geoseg("run", str(kampala_crop), "--out", str(tmp_path / "o"), "--tile", "100")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: invalid option tile: Value error, tile must be a multiple of 32, got 100"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "f64"], "invalid option precision: Input should be 'f32', 'bf16', 'fp16' or 'auto'"),
        (["--engine", "onnx", "--precision", "bf16"], "the onnx engine runs f32 only, not bf16"),
    ],
)
def test_precision_options_are_checked_before_anything_runs(tmp_path, kampala_crop, args, message):
    res = geoseg("run", str(kampala_crop), "--out", str(tmp_path / "o"), *args)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert not (tmp_path / "o").exists()


def test_models_lists_bundled_checkpoint():
    res = geoseg("models")
    assert res.returncode == 0
    assert "landcover_rgb.pt" in res.stdout and "unet" in res.stdout


def _empty(path):
    path.write_text("")
    return path


def _far_labels(path):
    import geopandas as gpd

    frame = gpd.read_file(ATLANTA_BUILDINGS)
    frame.set_geometry(frame.translate(0, 100_000)).to_file(path, engine="pyogrio")
    return path


@pytest.mark.parametrize(
    "args, culprit, expected",
    [
        (lambda d: ["--labels", str(_far_labels(d / "far.geojson"))], "far.geojson", "overlaps the image"),
        (
            lambda d: ["--labels", str(_empty(d / "empty.geojson"))],
            "empty.geojson",
            "not a vector file",
        ),
        (lambda d: ["--labels", str(ATLANTA_BUILDINGS), "--encoder", "no_such_net"], "no_such_net", ""),
    ],
    ids=["labels-miss-image", "empty-labels", "unknown-encoder"],
)
def test_train_bad_input_is_one_line_and_writes_nothing(tmp_path, args, culprit, expected):
    out = tmp_path / "run"
    res = geoseg(
        "train",
        "--task",
        "buildings",
        "--images",
        str(ATLANTA_PAN),
        *args(tmp_path),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--out",
        str(out),
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and culprit in lines[0] and expected in lines[0]
    assert not out.exists() or not any(p.suffix == ".pt" for p in out.iterdir())


def test_evaluate_refuses_a_model_of_another_band_count():
    res = geoseg(
        "evaluate",
        "--model",
        str(LANDCOVER_MODEL),
        "--images",
        str(ATLANTA_PAN),
        "--labels",
        str(ATLANTA_BUILDINGS),
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "1 band(s) but the model expects 3" in res.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [
                "evaluate",
                "--model",
                "baseline:landcover",
                "--chips",
                ".",
                "--colors",
                "x.yaml",
                "--device",
                "gpu",
            ],
            "--device 'gpu'",
        ),
        (["evaluate", "--model", "baseline:nope", "--chips", ".", "--colors", "x.yaml"], "unknown baseline"),
        (["sample", str(ALBERS_INT16), "--out", "s.gpkg", "--allocation", "most"], "--allocation"),
    ],
)
def test_bad_options_are_one_error_line_before_any_work(tmp_path, args, message):
    """Every user error is a GeosegError: one ``error: ...`` line, exit 2, no traceback."""
    res = geoseg(*[a.replace("s.gpkg", str(tmp_path / "s.gpkg")) for a in args], timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "s.gpkg").exists()


def test_library_errors_are_geoseg_errors_and_value_errors():
    from geoseg.errors import GeosegError, OptionError
    from geoseg.inference.baseline import get_baseline

    with pytest.raises(OptionError, match="unknown baseline") as exc:
        get_baseline("baseline:nope")
    assert isinstance(exc.value, GeosegError) and isinstance(exc.value, ValueError)
