"""QGIS layer styles (QML) for geoseg's vector layers, written without QGIS.

The documents follow what QGIS 3.22 saves (``<!DOCTYPE qgis ...>``, ``<qgis version=... styleCategories=..>``,
``renderer-v2`` with ``categories`` and ``symbols``); each symbol layer carries its properties both as an
``Option`` map (read by QGIS >= 3.20) and as legacy ``prop`` elements (read by older versions). They are meant
to be embedded in a GeoPackage's ``layer_styles`` table as a layer's default style.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

QGIS_VERSION = "3.22.16-Białowieża"
DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")
_NO_SCALE = "3x:0,0,0,0,0,0"


def _rgba(hex_color: str, alpha: float | None = None) -> tuple[int, int, int, int]:
    m = _HEX.match(hex_color.strip())
    if not m:
        raise ValueError(f"not a #RRGGBB or #RRGGBBAA colour: {hex_color!r}")
    r, g, b = (int(m.group(1)[i : i + 2], 16) for i in (0, 2, 4))
    a = int(m.group(2), 16) if m.group(2) else 255
    if alpha is not None:
        a = round(a * min(max(alpha, 0.0), 1.0))
    return r, g, b, a


def _qcolor(rgba: tuple[int, int, int, int]) -> str:
    return ",".join(str(c) for c in rgba)


def _empty_ddp(parent: ET.Element) -> None:
    ddp = ET.SubElement(parent, "data_defined_properties")
    opt = ET.SubElement(ddp, "Option", type="Map")
    ET.SubElement(opt, "Option", type="QString", name="name", value="")
    ET.SubElement(opt, "Option", name="properties")
    ET.SubElement(opt, "Option", type="QString", name="type", value="collection")


def symbol(parent: ET.Element, kind: str, name: str, layer_class: str, props: dict[str, str]) -> None:
    """A QGIS ``kind`` symbol (fill, marker, ...) named ``name`` with one ``layer_class`` symbol layer."""
    sym = ET.SubElement(parent, "symbol", type=kind, name=name, alpha="1", clip_to_extent="1", force_rhr="0")
    _empty_ddp(sym)
    layer = ET.SubElement(sym, "layer", {"class": layer_class, "enabled": "1", "locked": "0", "pass": "0"})
    opt = ET.SubElement(layer, "Option", type="Map")
    for k, v in props.items():
        ET.SubElement(opt, "Option", type="QString", name=k, value=v)
    for k, v in props.items():
        ET.SubElement(layer, "prop", k=k, v=v)
    _empty_ddp(layer)


def _fill_symbol(
    parent: ET.Element,
    name: str,
    fill: tuple[int, int, int, int],
    outline: tuple[int, int, int, int],
    outline_width_mm: float,
    filled: bool = True,
) -> None:
    """A ``fill`` symbol with one SimpleFill layer."""
    props = {
        "border_width_map_unit_scale": _NO_SCALE,
        "color": _qcolor(fill),
        "joinstyle": "bevel",
        "offset": "0,0",
        "offset_map_unit_scale": _NO_SCALE,
        "offset_unit": "MM",
        "outline_color": _qcolor(outline),
        "outline_style": "solid",
        "outline_width": f"{outline_width_mm:g}",
        "outline_width_unit": "MM",
        "style": "solid" if filled else "no",
    }
    symbol(parent, "fill", name, "SimpleFill", props)


def qgis_root(**extra: str) -> ET.Element:
    """The ``<qgis>`` element of a layer style (``extra``: more of its attributes)."""
    return ET.Element(
        "qgis",
        {
            "version": QGIS_VERSION,
            "styleCategories": "AllStyleCategories",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "100000000",
            "maxScale": "0",
            "readOnly": "0",
            "labelsEnabled": "0",
            **extra,
        },
    )


def qml_text(root: ET.Element) -> str:
    """A style element as the text of a ``.qml`` file."""
    ET.indent(root, space="  ")
    return DOCTYPE + "\n" + ET.tostring(root, encoding="unicode") + "\n"


def _document(renderer: ET.Element) -> str:
    root = qgis_root(
        simplifyDrawingHints="1",
        simplifyDrawingTol="1",
        simplifyLocal="1",
        simplifyMaxScale="1",
        simplifyAlgorithm="0",
        symbologyReferenceScale="-1",
    )
    flags = ET.SubElement(root, "flags")
    for flag, value in (("Identifiable", "1"), ("Removable", "1"), ("Searchable", "1"), ("Private", "0")):
        ET.SubElement(flags, flag).text = value
    root.append(renderer)
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = "1"
    ET.SubElement(root, "layerGeometryType").text = "2"  # polygon
    return qml_text(root)


def _renderer(kind: str, **attrs: str) -> ET.Element:
    return ET.Element(
        "renderer-v2",
        {
            "type": kind,
            **attrs,
            "enableorderby": "0",
            "referencescale": "-1",
            "forceraster": "0",
            "symbollevels": "0",
        },
    )


def categorized_polygon_qml(
    field: str,
    categories: list[tuple[int, str, str]],
    opacity: float = 0.8,
    outline_width_mm: float = 0.1,
) -> str:
    """Categorized polygon style on ``field``: one (value, label, "#RRGGBB") per class.

    Polygons are filled with the class colour at ``opacity`` (outlines stay opaque: the class colour,
    darkened, ``outline_width_mm`` wide).
    """
    if not categories:
        raise ValueError("a categorized style needs at least one category")
    renderer = _renderer("categorizedSymbol", attr=field)
    cats = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, (value, label, color) in enumerate(categories):
        ET.SubElement(cats, "category", label=str(label), value=str(int(value)), render="true", symbol=str(i))
        r, g, b, _ = _rgba(color)
        outline = (int(r * 0.6), int(g * 0.6), int(b * 0.6), 255)
        _fill_symbol(symbols, str(i), _rgba(color, opacity), outline, outline_width_mm)
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    return _document(renderer)


def outline_polygon_qml(color: str = "#ff0000", width_mm: float = 0.5) -> str:
    """Single-symbol style drawing polygon outlines only (e.g. building footprints) in ``color``."""
    renderer = _renderer("singleSymbol")
    symbols = ET.SubElement(renderer, "symbols")
    _fill_symbol(symbols, "0", (0, 0, 0, 0), _rgba(color), width_mm, filled=False)
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    return _document(renderer)


def table_qml(aliases: dict[str, str]) -> str:
    """Style of a non-spatial table: the columns' display names in QGIS's attribute table and forms."""
    root = qgis_root()
    fields = ET.SubElement(root, "aliases")
    for i, (field, alias) in enumerate(aliases.items()):
        ET.SubElement(fields, "alias", field=field, index=str(i), name=alias)
    ET.SubElement(root, "layerGeometryType").text = "4"  # no geometry
    return qml_text(root)
