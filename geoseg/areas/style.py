"""QGIS style of a sample point layer: rings coloured by map class (or one colour for blind samples) and a
drop-down of the map's classes for ``ref_class`` in the attribute form, so an analyst labels by clicking."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from geoseg.outputs.styles import _qcolor, _rgba, qgis_root, qml_text, symbol

FALLBACK_COLORS = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf"]
READ_ONLY = ("sample_id", "map_class", "map_name")


def _ring(parent: ET.Element, name: str, color: str, size_mm: float = 3.0) -> None:
    props = {
        "angle": "0",
        "color": "0,0,0,0",
        "horizontal_anchor_point": "1",
        "joinstyle": "bevel",
        "name": "circle",
        "offset": "0,0",
        "offset_unit": "MM",
        "outline_color": _qcolor(_rgba(color)),
        "outline_style": "solid",
        "outline_width": "0.6",
        "outline_width_unit": "MM",
        "scale_method": "diameter",
        "size": f"{size_mm:g}",
        "size_unit": "MM",
        "vertical_anchor_point": "1",
    }
    symbol(parent, "marker", name, "SimpleMarker", props)


def sample_points_qml(
    classes: list[tuple[int, str, str | None]], blind: bool = False, labels: dict[int, str] | None = None
) -> str:
    """Style of the ``samples`` layer. ``classes``: (map value, name, "#RRGGBB" or None) of the map's
    strata; ``labels``: the classes offered in the ``ref_class`` drop-down (default: ``classes``)."""
    root = qgis_root()
    common = {"enableorderby": "0", "referencescale": "-1", "forceraster": "0", "symbollevels": "0"}
    if blind:
        renderer = ET.SubElement(root, "renderer-v2", {"type": "singleSymbol", **common})
        _ring(ET.SubElement(renderer, "symbols"), "0", "#ffff00")
    else:
        renderer = ET.SubElement(
            root, "renderer-v2", {"type": "categorizedSymbol", "attr": "map_class", **common}
        )
        cats = ET.SubElement(renderer, "categories")
        symbols = ET.SubElement(renderer, "symbols")
        for i, (value, name, color) in enumerate(classes):
            ET.SubElement(
                cats, "category", label=f"{value} {name}", value=str(int(value)), render="true", symbol=str(i)
            )
            _ring(symbols, str(i), color or FALLBACK_COLORS[i % len(FALLBACK_COLORS)])
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    fields = ET.SubElement(root, "fieldConfiguration")
    f = ET.SubElement(fields, "field", name="ref_class", configurationFlags="None")
    widget = ET.SubElement(f, "editWidget", type="ValueMap")
    cfg = ET.SubElement(ET.SubElement(widget, "config"), "Option", type="Map")
    entries = ET.SubElement(cfg, "Option", type="List", name="map")
    offered = labels if labels is not None else {v: n for v, n, _ in classes}
    for value, name in sorted(offered.items()):
        e = ET.SubElement(entries, "Option", type="Map")
        ET.SubElement(e, "Option", type="QString", name=f"{value} {name}", value=str(int(value)))
    aliases = ET.SubElement(root, "aliases")
    ET.SubElement(aliases, "alias", field="ref_class", index="0", name="reference class (analyst)")
    editable = ET.SubElement(root, "editable")
    for name in READ_ONLY:
        ET.SubElement(editable, "field", name=name, editable="0")
    ET.SubElement(root, "layerGeometryType").text = "0"  # point
    return qml_text(root)
