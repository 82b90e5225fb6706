"""What a run writes: sinks per product (``landcover``, ``buildings``) behind one interface (``sink``),
class raster -> polygons (``vectorize``), minimum mapping unit (``mmu``), building instances, COG and
GeoPackage writers, QGIS styles, class metadata and the STAC run record (``stac``).

Nothing here imports ``geoseg.run``: outputs take finished blocks and know nothing of the graph."""
