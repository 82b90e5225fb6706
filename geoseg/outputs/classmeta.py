"""Class names where GIS software looks for them: GDAL category names + a raster attribute table (in a
PAM ``.aux.xml`` sidecar, which rasterio cannot write into the file itself), and the STAC classification
and raster extensions of a class raster asset."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pystac
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension

from geoseg.io.classes import hex_to_rgb

MAX_CATEGORIES = 65536  # CategoryNames is a list indexed by value: only for small class codes


def _rgb(color: str | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(color, str):
        return hex_to_rgb(color)
    return int(color[0]), int(color[1]), int(color[2])


def write_category_sidecar(
    tif: str | Path,
    classes: Sequence[tuple[int, str, str | tuple[int, int, int]]],
    nodata_name: str = "nodata",
) -> Path:
    """Write ``<tif>.aux.xml``: band 1's category names (GDAL's ``GetCategoryNames``; QGIS legends) and a
    thematic raster attribute table (Value, Name, Red, Green, Blue) for ``classes`` (value, name, colour).

    Value 0 gets ``nodata_name``. Written next to the COG; GDAL reads it whenever it opens the file.
    """
    tif = Path(tif)
    top = max([v for v, _, _ in classes] + [0])
    if top >= MAX_CATEGORIES:
        raise ValueError(f"class value {top} is too large for category names")
    names = [""] * (top + 1)
    names[0] = nodata_name
    for v, name, _ in classes:
        names[v] = name
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    cats = ET.SubElement(band, "CategoryNames")
    for n in names:
        ET.SubElement(cats, "Category").text = n
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    for i, (name, typ, usage) in enumerate(
        [("Value", 0, 5), ("Name", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8)]
    ):
        f = ET.SubElement(rat, "FieldDefn", index=str(i))
        ET.SubElement(f, "Name").text = name
        ET.SubElement(f, "Type").text = str(typ)
        ET.SubElement(f, "Usage").text = str(usage)
    for row, (v, name, color) in enumerate(sorted(classes)):
        r, g, b = _rgb(color)
        el = ET.SubElement(rat, "Row", index=str(row))
        for value in (v, name, r, g, b):
            ET.SubElement(el, "F").text = str(value)
    ET.indent(root, space="  ")
    out = tif.with_name(tif.name + ".aux.xml")
    out.write_text(ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")
    return out


def _machine_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "class"


def add_class_extensions(
    item: pystac.Item,
    asset_key: str,
    classes: Sequence[tuple[int, str, str | tuple[int, int, int]]] | None,
    data_type: str,
    nodata: float | None,
    resolution: float | None = None,
) -> None:
    """Classification (class values, names, colour hints) and raster band info on ``item``'s asset."""
    asset = item.assets[asset_key]
    raster = RasterExtension.ext(asset, add_if_missing=True)
    raster.bands = [
        RasterBand.create(nodata=nodata, data_type=DataType(data_type), spatial_resolution=resolution)
    ]
    if classes:
        cls = ClassificationExtension.ext(asset, add_if_missing=True)
        cls.classes = [
            Classification.create(
                value=int(v),
                name=_machine_name(name),
                title=name,
                color_hint="{:02X}{:02X}{:02X}".format(*_rgb(color)),
            )
            for v, name, color in classes
        ]
