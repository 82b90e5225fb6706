"""The land-cover product: ``landcover.tif``, the ``landcover`` polygon layer and ``confidence.tif``."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from geoseg.io.raster import Scene, crs_of
from geoseg.models.meta import CheckpointMeta
from geoseg.outputs.classmeta import write_category_sidecar
from geoseg.outputs.cog import BlockCOGWriter
from geoseg.outputs.gpkg import write_layer, write_layer_styles
from geoseg.outputs.sink import NODATA, BlockResult, Sink
from geoseg.outputs.stac import COG_MEDIA, GPKG_MEDIA
from geoseg.outputs.styles import categorized_polygon_qml
from geoseg.outputs.vectorize import polygons_to_frame
from tiles import Window

__all__ = ["CONFIDENCE_TIF", "GPKG", "LANDCOVER_TIF", "LandcoverSink"]

LANDCOVER_TIF = "landcover.tif"
CONFIDENCE_TIF = "confidence.tif"
# final polygons per GeoPackage append (one transaction each). 32,000 cut the writes of the 8192² scene's
# 68,481 polygons by 16 % offline, but held 70-90 MB more in the client at 16384² for no wall-time gain
# there (148.9-152.4 s with 8,000, 149.8 s with 32,000)
POLYGONS_PER_WRITE = 8000
GPKG = "geoseg.gpkg"


class LandcoverSink(Sink):
    """landcover.tif (class ids, colour table, category names) + the ``landcover`` layer with every class's
    polygons, and ``confidence.tif`` when asked."""

    layer = "landcover"

    def __init__(
        self,
        stage: Path,
        gpkg: Path,
        scene: Scene,
        meta: CheckpointMeta,
        tags: dict,
        confidence: bool = False,
    ) -> None:
        h, w = scene.shape
        self.gpkg = gpkg
        self.meta = meta
        self.crs_wkt = crs_of(scene.geobox).to_wkt()
        self.names = {c.id: c.name for c in meta.classes}
        self.pending: list = []  # final polygons not yet written (memory holds these and the seam ones)
        self.raster_done: Future[None] | None = None
        grid: dict[str, Any] = dict(crs=self.crs_wkt, transform=scene.geobox.affine, width=w, height=h)
        self.writer = BlockCOGWriter(
            stage / LANDCOVER_TIF,
            **grid,
            dtype="uint8",
            nodata=NODATA,
            colormap={c.id: c.rgb for c in meta.classes},
            class_names=self.names,
            tags=tags,
        )
        self.wants_confidence = confidence
        self.conf_writer = (
            BlockCOGWriter(
                stage / CONFIDENCE_TIF,
                **grid,
                dtype="uint8",
                nodata=None,
                tags=tags,
                overview_resampling="average",
                band_description="confidence (winning-class probability x 255)",
            )
            if confidence
            else None
        )

    def add_block(self, block: Window, res: BlockResult) -> None:
        self.writer.write(block.row_off, block.col_off, res.labels)
        if self.conf_writer is not None and res.confidence is not None:
            self.conf_writer.write(block.row_off, block.col_off, res.confidence)
        self.add_polygons(res.polygons.interior)

    def add_polygons(self, polys: list) -> None:
        self.pending.extend(polys)
        if len(self.pending) >= POLYGONS_PER_WRITE:
            self._write_pending()

    def blocks_done(self) -> None:
        """Build the COG (GDAL, outside the GIL) while the seam polygons are merged and written."""
        self.raster_done = ThreadPoolExecutor(1, thread_name_prefix="geoseg-cog").submit(self.writer.close)

    def _write_pending(self) -> None:
        """Append the final polygons held so far to the layer (a few thousand at a time: one GeoPackage
        transaction per append, so appends of a single block's polygons cost twice as much)."""
        if self.pending or self.polygons == 0:
            frame = polygons_to_frame(self.pending, self.names, self.crs_wkt)
            write_layer(frame, self.gpkg, self.layer, append=self.polygons > 0)
            self.polygons += len(frame)
        self.pending = []

    def finish(self) -> None:
        self._write_pending()
        if self.raster_done is not None:
            self.raster_done.result()
        self.writer.close()  # no-op once closed
        if self.conf_writer is not None:
            self.conf_writer.close()
        classes = [(c.id, c.name, c.color) for c in self.meta.classes]
        write_category_sidecar(self.writer.path, classes)
        write_layer_styles(self.gpkg, self.layer, categorized_polygon_qml("class_id", classes), self.layer)

    def abort(self) -> None:
        if self.raster_done is not None:
            wait([self.raster_done])  # the staging folder, COG included, is removed by the caller
        self.writer.abort()
        if self.conf_writer is not None:
            self.conf_writer.abort()

    def assets(self) -> dict:
        out = {
            "landcover": (f"./{LANDCOVER_TIF}", COG_MEDIA, ["data", "classification"], "Land-cover classes"),
            "vectors": (f"./{GPKG}", GPKG_MEDIA, ["data"], "Land-cover polygons"),
        }
        if self.conf_writer is not None:
            out["confidence"] = (
                f"./{CONFIDENCE_TIF}",
                COG_MEDIA,
                ["data"],
                "Winning-class probability x 255",
            )
        return out
