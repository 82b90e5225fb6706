"""Outputs of a building model: one polygon per building and a raster of building ids, seam-free.

A building is a 4-connected region of the ``building`` class in the stitched scene, split where
touching buildings meet at a neck (``geoseg.outputs.instances.label_instances``); polygons of buildings that
cross output blocks are merged exactly (``merge_seams``) before they are split and get an id, so ids
never change at block edges. Regions smaller than ``MIN_AREA_M2`` are dropped.

Streaming, in two passes over the output blocks:
  1. as blocks finish, each block's winning-class probability goes to a temporary GeoTIFF and its
     interior buildings get ids and a ``score`` (their mean building probability) and are
     appended to the ``buildings`` layer; merged seam buildings follow at the end.
  2. every block of ``buildings.tif`` is rasterized from the layer (read back by bounding box
     through its spatial index).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.features import rasterize

from geoseg.io.raster import crs_of, window_to_rio
from geoseg.outputs.cog import BlockCOGWriter
from geoseg.outputs.gpkg import write_layer, write_layer_styles
from geoseg.outputs.instances import MIN_SPLIT_PIECE_M2, instance_polygons, label_instances
from geoseg.outputs.sink import BlockResult, Sink
from geoseg.outputs.stac import COG_MEDIA, GPKG_MEDIA
from geoseg.outputs.styles import outline_polygon_qml
from geoseg.outputs.vectorize import Polys, polygons_to_frame
from tiles import Window, window_from_bounds

LAYER = "buildings"
RASTER = "buildings.tif"
MIN_AREA_M2 = 4.0
CONVEX_ENOUGH = 0.98  # area / convex hull area above which a region is not tested for a split


class BuildingOutputs(Sink):
    """Collects building polygons block by block, then writes ``buildings.tif`` and the scores."""

    layer = LAYER
    wants_confidence = True  # block results must carry the winning-class probability
    keep_confidence: Path | None = None  # where to keep the probabilities as a COG (geoseg run --confidence)

    def __init__(
        self,
        stage: Path,
        gpkg: Path,
        geobox: GeoBox,
        gsd_m: float,
        building_class: int,
        tags: dict,
        blocks: list[Window],
    ) -> None:
        self.blocks = blocks
        self.gpkg = gpkg
        self.gsd_m = gsd_m
        self.geobox = geobox
        self.building_class = building_class
        self.crs_wkt = crs_of(geobox).to_wkt()
        self.tags = tags
        self.raster = stage / RASTER
        self.polygons = 0
        self._confidence_path = stage / ".confidence.tif"
        h, w = int(geobox.shape.y), int(geobox.shape.x)
        self._confidence = rasterio.open(
            self._confidence_path,
            "w+",
            driver="GTiff",
            width=w,
            height=h,
            count=1,
            dtype="uint8",
            crs=self.crs_wkt,
            transform=geobox.affine,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="deflate",
            zlevel=1,
            SPARSE_OK=True,
        )

    def add_block(self, block: Window, res: BlockResult) -> None:
        """A finished output block: keep its probabilities, give its interior buildings ids."""
        self._confidence.write(res.confidence, 1, window=window_to_rio(block))
        self.add_polygons(res.polygons.interior, block)

    def add_polygons(self, polys: Polys, window: Window | None = None) -> None:
        """Give final building polygons ids and scores and append them to the layer.

        Other classes are skipped. ``window`` covers all the polygons (a block); without it each
        polygon's score is read over its own bounding window.
        """
        buildings = self._split_touching([g for g, value in polys if value == self.building_class])
        frame = polygons_to_frame([(g, self.building_class) for g in buildings], {}, self.crs_wkt)
        frame = frame[frame["area_m2"] >= MIN_AREA_M2]
        if frame.empty and self.polygons:
            return
        geoms = frame.geometry.to_numpy()
        if window is not None:
            scores = self._mean_confidence(geoms, window)
        else:
            scores = np.concatenate(
                [self._mean_confidence([g], self._bounds_window(g)) for g in geoms] or [np.zeros(0)]
            )
        out = gpd.GeoDataFrame(
            {
                "id": np.arange(self.polygons + 1, self.polygons + len(frame) + 1, dtype=np.int64),
                "score": np.round(scores, 4),
                "area_m2": frame["area_m2"].to_numpy(),
            },
            geometry=geoms,
            crs=frame.crs,
        )
        write_layer(out, self.gpkg, LAYER, append=self.polygons > 0)
        self.polygons += len(out)

    def _split_touching(self, geoms: list) -> list:
        """Split regions where touching buildings meet at a neck (``label_instances``); convex ones
        cannot hold two buildings joined by a neck and are kept as they are."""
        out = []
        m2_per_crs_unit2 = self.gsd_m**2 / abs(self.geobox.affine.a * self.geobox.affine.e)
        for g in geoms:
            if (
                g.area * m2_per_crs_unit2 < 2 * MIN_SPLIT_PIECE_M2
                or g.area > CONVEX_ENOUGH * g.convex_hull.area
            ):
                out.append(g)
                continue
            window = self._bounds_window(g)
            transform = window.transform(self.geobox.affine)
            mask = rasterize([(g, 1)], out_shape=window.shape, transform=transform, dtype="uint8") > 0
            pieces = label_instances(mask, self.gsd_m, min_area_m2=0.0, split_touching=True)
            if pieces.max() < 2:
                out.append(g)
            else:
                out.extend(instance_polygons(pieces, transform, self.geobox.crs).geometry)
        return out

    def _bounds_window(self, geom) -> Window:
        return window_from_bounds(geom.bounds, self.geobox.affine)

    def _mean_confidence(self, geoms, window: Window) -> np.ndarray:
        """Mean winning-class probability (0-1) inside each geometry, read over ``window``."""
        if len(geoms) == 0:
            return np.zeros(0)
        ids = rasterize(
            zip(geoms, range(1, len(geoms) + 1), strict=False),
            out_shape=window.shape,
            transform=window.transform(self.geobox.affine),
            fill=0,
            dtype="uint32",
        )
        conf = self._confidence.read(1, window=window_to_rio(window))
        sums = np.bincount(ids.ravel(), weights=conf.ravel(), minlength=len(geoms) + 1)
        counts = np.bincount(ids.ravel(), minlength=len(geoms) + 1)
        return sums[1:] / np.maximum(counts[1:], 1) / 255.0

    def blocks_done(self) -> None:
        """Nothing to start early: ids need the merged polygons first."""

    def finish(self) -> None:
        """Rasterize the ids block by block into ``buildings.tif``."""
        self._confidence.close()
        if self.keep_confidence is not None:
            import rasterio.shutil

            rasterio.shutil.copy(
                self._confidence_path,
                self.keep_confidence,
                driver="COG",
                compress="deflate",
                overview_resampling="average",
            )
        self._confidence_path.unlink()
        self._renumber()
        write_layer_styles(self.gpkg, LAYER, outline_polygon_qml("#E3342F"), LAYER)
        h, w = int(self.geobox.shape.y), int(self.geobox.shape.x)
        writer = BlockCOGWriter(
            self.raster,
            crs=self.crs_wkt,
            transform=self.geobox.affine,
            width=w,
            height=h,
            dtype="uint32",
            nodata=0,
            tags=self.tags,
            overview_resampling="nearest",
            band_description="building id",
        )
        with writer:
            for block in self.blocks:
                writer.write(block.row_off, block.col_off, self._block_ids(block))

    def _renumber(self) -> None:
        """Give the buildings ids in a fixed order (north to south, then west to east): they arrive in the
        order blocks finish, which differs between runs, worker layouts and resumed runs; the ids must not.
        The layer is rewritten in that order."""
        if self.polygons == 0:
            return
        frame = pyogrio.read_dataframe(self.gpkg, layer=LAYER)
        bounds = frame.geometry.bounds
        order = (
            bounds.assign(top=-bounds["maxy"], area=frame["area_m2"])
            .sort_values(["top", "minx", "miny", "maxx", "area"], kind="stable")
            .index
        )
        frame = frame.loc[order].reset_index(drop=True)
        frame["id"] = np.arange(1, len(frame) + 1, dtype=np.int64)
        write_layer(frame, self.gpkg, LAYER)

    def _block_ids(self, block: Window) -> np.ndarray:
        transform = block.transform(self.geobox.affine)
        bounds = block.bounds(self.geobox.affine)
        if self.polygons == 0:
            return np.zeros(block.shape, np.uint32)
        found = pyogrio.read_dataframe(self.gpkg, layer=LAYER, bbox=bounds, columns=["id"])
        if found.empty:
            return np.zeros(block.shape, np.uint32)
        return rasterize(
            zip(found.geometry, found["id"].astype(int), strict=True),
            out_shape=block.shape,
            transform=transform,
            fill=0,
            dtype="uint32",
        )

    def assets(self) -> dict:
        out = {
            "buildings": (f"./{RASTER}", COG_MEDIA, ["data"], "Building ids (0 = none)"),
            "vectors": (f"./{self.gpkg.name}", GPKG_MEDIA, ["data"], "Building footprints"),
        }
        if self.keep_confidence is not None:
            out[self.keep_confidence.stem] = (  # confidence, or buildings_confidence beside land cover
                f"./{self.keep_confidence.name}",
                COG_MEDIA,
                ["data"],
                "Winning-class probability x 255",
            )
        return out

    def abort(self) -> None:
        if not self._confidence.closed:
            self._confidence.close()
        self._confidence_path.unlink(missing_ok=True)
