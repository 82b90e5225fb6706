"""QML documents: well-formed, shaped like the styles QGIS 3.22 saves."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from geoseg.outputs.styles import categorized_polygon_qml, outline_polygon_qml

from .conftest import LULC_COLORS, LULC_NAMES


def parse(qml: str) -> ET.Element:
    assert qml.startswith("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>")
    root = ET.fromstring(qml.split("\n", 1)[1])
    assert root.tag == "qgis" and root.get("version", "").startswith("3.22")
    assert root.get("styleCategories") == "AllStyleCategories"
    return root


def layer_props(symbol: ET.Element) -> dict[str, str]:
    layer = symbol.find("layer")
    assert layer is not None and layer.get("class") == "SimpleFill"
    opts = {o.get("name"): o.get("value") for o in layer.find("Option").findall("Option")}
    props = {p.get("k"): p.get("v") for p in layer.findall("prop")}
    assert opts == props
    return opts


def test_categorized_polygon_qml() -> None:
    cats = [(k, LULC_NAMES[k], LULC_COLORS[k]) for k in LULC_NAMES] + [(9, 'water & "wet" <x>', "#0000ffff")]
    root = parse(categorized_polygon_qml("class_id", cats, opacity=0.5))
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    categories = renderer.find("categories").findall("category")
    symbols = {s.get("name"): s for s in renderer.find("symbols").findall("symbol")}
    assert [(c.get("value"), c.get("label")) for c in categories] == [(str(v), label) for v, label, _ in cats]
    for c, (_, _, color) in zip(categories, cats, strict=True):
        sym = symbols[c.get("symbol")]
        assert sym.get("type") == "fill"
        props = layer_props(sym)
        r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
        assert props["color"] == f"{r},{g},{b},128"  # opacity 0.5 on the fill
        assert props["outline_color"].endswith(",255") and props["style"] == "solid"
    assert root.findtext("layerGeometryType") == "2"


def test_outline_polygon_qml() -> None:
    root = parse(outline_polygon_qml("#FF00FF", width_mm=0.6))
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "singleSymbol"
    props = layer_props(renderer.find("symbols").find("symbol"))
    assert props["style"] == "no" and props["outline_color"] == "255,0,255,255"
    assert props["outline_width"] == "0.6"


def test_bad_colour() -> None:
    with pytest.raises(ValueError):
        categorized_polygon_qml("class_id", [(1, "a", "green")])
    with pytest.raises(ValueError):
        categorized_polygon_qml("class_id", [])
