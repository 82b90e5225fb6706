"""The monitor's cumulative outputs, rebuilt from the run and change folders whenever those change:
``history.gpkg``, ``timeseries.csv`` + ``timeseries.png``, and the STAC ``catalog.json``.

Each is written to a temporary file and renamed into place, and each is a pure function of the folders it
reads, so an interrupted call that is resumed produces the same history as an uninterrupted one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoseg.io.staging import RUN_FILE, atomic_path, atomic_write_text
from geoseg.monitor.change import CHANGE_GPKG, CHANGE_JSON, CHANGE_LAYER, class_names

HISTORY = "history.gpkg"
TIMESERIES_CSV = "timeseries.csv"
TIMESERIES_PNG = "timeseries.png"
CATALOG = "catalog.json"
OUTPUTS = (HISTORY, TIMESERIES_CSV, TIMESERIES_PNG, CATALOG)


@dataclass(frozen=True)
class DateRun:
    date: dt.date
    folder: Path  # relative to the output folder


@dataclass(frozen=True)
class Step:
    kind: str  # "previous" or "first"
    before: dt.date
    after: dt.date
    folder: Path  # relative to the output folder


def _temporal(qml: str, start: str, end: str | None) -> str:
    """Add QGIS temporal-controller settings: features live from ``start`` (to ``end``)."""
    mode = 2 if end else 1  # ModeFeatureDateTimeStartAndEndFromFields / ...InstantFromField
    tag = (
        f'<temporal enabled="1" mode="{mode}" startField="{start}" endField="{end or ""}" '
        'durationField="" durationUnit="min" fixedDuration="0" accumulate="0" startExpression="" '
        'endExpression="" limitMode="1"><fixedRange><start></start><end></end></fixedRange></temporal>'
    )
    return qml.replace("</qgis>", f"  {tag}\n</qgis>")


def class_table(runs: list[DateRun], out: Path) -> list[tuple[int, str, str]]:
    """(id, name, "#rrggbb") of every class in the runs' class rasters."""
    import rasterio

    found: dict[int, tuple[str, str]] = {}
    for r in runs:
        tif = out / r.folder / "landcover.tif"
        names = class_names(tif)
        with rasterio.open(tif) as src:
            try:
                cmap = src.colormap(1)
            except ValueError:
                cmap = {}
        for k, name in names.items():
            rgb = cmap.get(k, (128, 128, 128))[:3]
            found.setdefault(k, (name, "#{:02x}{:02x}{:02x}".format(*rgb)))
    return [(k, n, c) for k, (n, c) in sorted(found.items())]


def write_history(out: Path, runs: list[DateRun], steps: list[Step], with_landcover: bool) -> None:
    import geopandas as gpd
    import pandas as pd
    import pyogrio

    from geoseg.change.buildings import BUILDING_LAYERS
    from geoseg.outputs.gpkg import write_layer
    from geoseg.outputs.styles import categorized_polygon_qml, outline_polygon_qml

    classes = class_table(runs, out)
    by_name = {n: k for k, n, _ in classes}
    cats = classes or [(0, "none", "#808080")]
    layers: dict[str, list] = {}
    for s in steps:
        layer = CHANGE_LAYER if s.kind == "previous" else f"{CHANGE_LAYER}_since_first"
        frame = pyogrio.read_dataframe(out / s.folder / CHANGE_GPKG, layer=CHANGE_LAYER)
        frame["date_before"] = pd.Timestamp(s.before)
        frame["date_after"] = pd.Timestamp(s.after)
        frame["step"] = s.folder.name
        for col in ("from", "to"):
            if f"{col}_id" not in frame:
                frame[f"{col}_id"] = frame[f"{col}_class"].map(by_name).fillna(0).astype("int32")
        layers.setdefault(layer, []).append(frame)
    building_layers: dict[str, list] = {}  # change steps of runs that map buildings too
    for s in steps:
        if s.kind != "previous":
            continue
        have = {name for name, _ in pyogrio.list_layers(out / s.folder / CHANGE_GPKG)}
        for name in BUILDING_LAYERS:
            if name in have:
                frame = pyogrio.read_dataframe(out / s.folder / CHANGE_GPKG, layer=name)
                frame["date_before"] = pd.Timestamp(s.before)
                frame["date_after"] = pd.Timestamp(s.after)
                frame["step"] = s.folder.name
                building_layers.setdefault(name, []).append(frame)
    if with_landcover:
        for r in runs:
            frame = pyogrio.read_dataframe(out / r.folder / "geoseg.gpkg", layer="landcover")
            frame["date"] = pd.Timestamp(r.date)
            layers.setdefault("landcover", []).append(frame)
    crs = None
    if runs:
        import rasterio

        with rasterio.open(out / runs[-1].folder / "landcover.tif") as src:
            crs = src.crs.to_wkt()
    with atomic_path(out / HISTORY, keep_suffix=True) as tmp:
        for layer in (CHANGE_LAYER, f"{CHANGE_LAYER}_since_first", "landcover"):
            if layer == CHANGE_LAYER or layer in layers:
                parts = layers.get(layer, [])
                if parts:
                    frame = pd.concat([p.to_crs(parts[0].crs) for p in parts], ignore_index=True)
                else:
                    frame = gpd.GeoDataFrame(
                        {"from_class": [], "to_class": [], "area_m2": [], "date_before": pd.to_datetime([]),
                         "date_after": pd.to_datetime([]), "step": [], "from_id": [], "to_id": []},
                        geometry=[], crs=crs or "EPSG:4326",
                    )  # fmt: skip
                field = "class_id" if layer == "landcover" else "to_id"
                qml = categorized_polygon_qml(field, cats)
                qml = (
                    _temporal(qml, "date", None)
                    if layer == "landcover"
                    else _temporal(qml, "date_before", "date_after")
                )
                write_layer(frame, tmp, layer, style_qml=qml, style_name=layer)
        for layer, parts in building_layers.items():
            frame = pd.concat([p.to_crs(parts[0].crs) for p in parts], ignore_index=True)
            qml = _temporal(outline_polygon_qml(BUILDING_LAYERS[layer]), "date_before", "date_after")
            write_layer(frame, tmp, layer, style_qml=qml, style_name=layer)


def _class_areas(tif: Path) -> tuple[dict[int, float], float]:
    import rasterio

    with rasterio.open(tif) as src:
        data = src.read(1)
        px = abs(src.transform.a * src.transform.e)
    counts = np.bincount(data.ravel(), minlength=256)
    return {k: float(c) * px for k, c in enumerate(counts) if k and c}, float(counts[1:].sum()) * px


def write_timeseries(out: Path, runs: list[DateRun], steps: list[Step]) -> None:
    """timeseries.csv (a row per date and class), timeseries.png (areas per date, net change per step)."""
    import pyogrio

    classes = class_table(runs, out)
    net: dict[dt.date, dict[int, float]] = {}
    for s in steps:
        if s.kind != "previous":
            continue
        frame = pyogrio.read_dataframe(out / s.folder / CHANGE_GPKG, layer=CHANGE_LAYER, read_geometry=False)
        by_name = {n: k for k, n, _ in classes}
        change = {k: 0.0 for k, _, _ in classes}
        for _, row in frame.iterrows():
            f = int(row["from_id"]) if "from_id" in frame else by_name.get(row["from_class"], 0)
            t = int(row["to_id"]) if "to_id" in frame else by_name.get(row["to_class"], 0)
            change[t] = change.get(t, 0.0) + float(row["area_m2"])
            change[f] = change.get(f, 0.0) - float(row["area_m2"])
        net[s.after] = change
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["date", "class_id", "class_name", "area_m2", "share_pct", "valid_area_m2", "net_change_m2"])
    areas: dict[int, list[float]] = {k: [] for k, _, _ in classes}
    for r in runs:
        per, valid = _class_areas(out / r.folder / "landcover.tif")
        for k, name, _ in classes:
            a = per.get(k, 0.0)
            areas[k].append(a)
            n = net.get(r.date, {}).get(k)
            w.writerow([r.date.isoformat(), k, name, f"{a:.1f}", f"{100 * a / valid:.3f}" if valid else "",
                        f"{valid:.1f}", "" if n is None else f"{n:.1f}"])  # fmt: skip
    atomic_write_text(out / TIMESERIES_CSV, buf.getvalue())
    _plot(out, runs, classes, areas, net)


def _plot(out, runs, classes, areas, net) -> None:
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    dates = [r.date for r in runs]
    classes = [c for c in classes if any(areas[c[0]])]  # classes never mapped stay in the CSV only
    fig = Figure(figsize=(9, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    for k, name, color in classes:
        top.plot(dates, np.asarray(areas[k]) / 1e4, "o-", color=color, label=name)
    top.set_ylabel("area (ha)")
    top.set_title(f"{out.name}: land cover per date (valid AOI pixels)")
    top.legend(loc="best", fontsize="small")
    top.grid(alpha=0.3)
    steps = sorted(net)
    if steps:
        span = max((max(dates) - min(dates)).days, 1) if dates else 1
        width = span / max(len(steps), 1) / (len(classes) + 1) * 0.6
        for i, (k, name, color) in enumerate(classes):
            x = [mdates.date2num(d) + (i - len(classes) / 2) * width for d in steps]
            bottom.bar(x, [net[d].get(k, 0.0) / 1e4 for d in steps], width=width, color=color, label=name)
    bottom.axhline(0, color="black", lw=0.8)
    bottom.set_ylabel("net change since previous date (ha)")
    bottom.grid(alpha=0.3)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()
    with atomic_path(out / TIMESERIES_PNG) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})


def write_catalog(out: Path, name: str, runs: list[DateRun], steps: list[Step]) -> None:
    """catalog.json: a STAC Catalog linking every run (run.json) and change (change.json) Item."""
    import pystac

    cat = pystac.Catalog(
        id=name, description=f"geoseg monitor: {name} (land-cover runs per date, change steps)"
    )
    for r in runs:
        cat.add_link(pystac.Link("item", f"./{(r.folder / RUN_FILE).as_posix()}", pystac.MediaType.JSON,
                                 title=f"land cover {r.date.isoformat()}"))  # fmt: skip
    for s in steps:
        title = f"change {s.before.isoformat()} -> {s.after.isoformat()}" + (
            " (since first)" if s.kind == "first" else ""
        )
        cat.add_link(
            pystac.Link(
                "item", f"./{(s.folder / CHANGE_JSON).as_posix()}", pystac.MediaType.JSON, title=title
            )
        )
    data = cat.to_dict(include_self_link=False, transform_hrefs=False)
    atomic_write_text(out / CATALOG, json.dumps(data, indent=2) + "\n")
