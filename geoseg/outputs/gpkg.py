"""GeoPackage layers (geopandas frames written with pyogrio) and their embedded QGIS default styles."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely

from geoseg.errors import OutputError

# QGIS's layer_styles table as QGIS creates it in a GeoPackage (through OGR, hence the GPKG datetime default).
LAYER_STYLES_SQL = """CREATE TABLE "layer_styles" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  "f_table_catalog" TEXT(256),
  "f_table_schema" TEXT(256),
  "f_table_name" TEXT(256),
  "f_geometry_column" TEXT(256),
  "styleName" TEXT(30),
  "styleQML" TEXT,
  "styleSLD" TEXT,
  "useAsDefault" BOOLEAN,
  "description" TEXT,
  "owner" TEXT(30),
  "ui" TEXT(30),
  "update_time" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)"""

GPKG_VERSION = "1.2"

_MULTI = {  # shapely type id -> layer geometry type
    0: "MultiPoint",
    4: "MultiPoint",
    1: "MultiLineString",
    2: "MultiLineString",
    5: "MultiLineString",
    3: "MultiPolygon",
    6: "MultiPolygon",
}


def _geometry_type(gdf: gpd.GeoDataFrame, default: str) -> str:
    geoms = gdf.geometry.to_numpy()
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if len(geoms) == 0:
        return default
    kinds = {_MULTI.get(int(t), "?") for t in set(shapely.get_type_id(geoms).tolist())}
    if len(kinds) != 1 or "?" in kinds:
        found = sorted(set(gpd.GeoSeries(geoms).geom_type))
        raise OutputError(f"a layer needs one kind of geometry (points, lines or polygons), got {found}")
    return kinds.pop()


def write_layer(
    gdf: gpd.GeoDataFrame,
    path: str | os.PathLike[str],
    layer: str,
    *,
    style_qml: str | None = None,
    style_name: str | None = None,
    geometry_type: str = "MultiPolygon",
    append: bool = False,
) -> None:
    """Write ``gdf`` as GeoPackage layer ``layer`` (replacing a layer of that name, keeping other layers;
    with ``append`` adding its features to the existing layer instead).

    Geometries are promoted to their multi type so the layer has a single geometry type (``geometry_type``
    is used for an empty frame); the frame's CRS is kept (custom CRSs too); a spatial index is built. With
    ``style_qml`` the style is embedded as the layer's QGIS default style.
    """
    if gdf.crs is None:
        raise OutputError(f"layer {layer!r} has no CRS")
    gtype = _geometry_type(gdf, geometry_type)
    # GeoPackage 1.2 for a new file: GDAL < 3.7 (e.g. under QGIS 3.22) warns about the newer default 1.4
    new_file = {"VERSION": GPKG_VERSION} if not Path(path).exists() else None
    try:
        pyogrio.write_dataframe(
            gdf,
            path,
            layer=layer,
            driver="GPKG",
            geometry_type=gtype,
            promote_to_multi=True,
            dataset_options=new_file,
            layer_options=None if append else {"SPATIAL_INDEX": "YES"},
            append=append,
        )
    except Exception as exc:
        raise OutputError(f"cannot write layer {layer!r} to {path}: {exc}") from exc
    if style_qml is not None:
        write_layer_styles(path, layer, style_qml, style_name or layer)


def write_layer_styles(path: str | os.PathLike[str], layer: str, qml: str, name: str) -> None:
    """Store ``qml`` as the default QGIS style of ``layer`` (a feature layer or an attributes table) in the
    GeoPackage's ``layer_styles`` table.

    The table gets QGIS's schema and is registered in ``gpkg_contents`` as an attributes table, so GDAL and
    QGIS see a regular table; an earlier style of that layer with the same name is replaced, and other styles
    of the layer stop being the default.
    """
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"{path} does not exist")
    con = sqlite3.connect(path)
    try:
        with con:
            row = con.execute(
                "SELECT column_name FROM gpkg_geometry_columns WHERE lower(table_name) = lower(?)", (layer,)
            ).fetchone()
            if row is None:  # an attributes table: QGIS keys its styles with an empty geometry column
                table = con.execute(
                    "SELECT 1 FROM gpkg_contents WHERE lower(table_name) = lower(?) "
                    "AND data_type = 'attributes'",
                    (layer,),
                ).fetchone()
                if table is None:
                    raise OutputError(f"{path} has no layer {layer!r}")
                row = ("",)
            exists = con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'layer_styles'"
            ).fetchone()
            if not exists:
                con.execute(LAYER_STYLES_SQL)
            con.execute(
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, "
                "last_change, srs_id) VALUES ('layer_styles', 'attributes', 'layer_styles', '', "
                "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0)"
            )
            name = name[:30]  # the column is TEXT(30); GDAL warns about longer values
            con.execute(
                "DELETE FROM layer_styles WHERE f_table_name = ? AND f_geometry_column = ? AND styleName = ?",
                (layer, row[0], name),
            )
            con.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?", (layer,))
            con.execute(
                "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui) "
                "VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', '')",
                (layer, row[0], name, qml, f"geoseg default style of {layer}"),
            )
    except sqlite3.Error as exc:
        raise OutputError(f"cannot store the style of {layer!r} in {path}: {exc}") from exc
    finally:
        con.close()
