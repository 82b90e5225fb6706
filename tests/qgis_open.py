"""Open every output of a geoseg run in headless QGIS (run with the system python3 that has qgis).

usage: QT_QPA_PLATFORM=offscreen python3 tests/qgis_open.py OUTDIR PNG
Prints one JSON line per layer; exits 1 if any layer is invalid, ungeoreferenced or unstyled.
"""

import json
import os
import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize

out, png = Path(sys.argv[1]), sys.argv[2]
app = QgsApplication([], False)
app.initQgis()
ok, layers = True, []
for tif in sorted(out.glob("*.tif")):
    lyr = QgsRasterLayer(str(tif), tif.stem)
    info = {
        "layer": tif.name,
        "valid": lyr.isValid(),
        "crs": lyr.crs().isValid(),
        "renderer": lyr.renderer().type() if lyr.renderer() else None,
    }
    ok &= info["valid"] and info["crs"]
    layers.append(lyr)
    print(json.dumps(info))
gpkg = next(iter(sorted(out.glob("*.gpkg"))), out / "geoseg.gpkg")  # geoseg.gpkg, or change.gpkg
whole = QgsVectorLayer(str(gpkg), "all", "ogr")
names = [sub.split("!!::!!")[1] for sub in whole.dataProvider().subLayers()]
for name in [n for n in names if n != "layer_styles"]:
    vec = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
    if not vec.isSpatial():  # attribute tables (e.g. change.gpkg's transitions): valid, styled, no CRS
        _, styled = vec.loadDefaultStyle()
        table = {"layer": name, "valid": vec.isValid(), "table": True, "styled": styled}
        print(json.dumps(table | {"features": vec.featureCount()}))
        ok &= vec.isValid() and styled
        continue
    _, styled = vec.loadDefaultStyle()
    info = {
        "layer": name,
        "valid": vec.isValid(),
        "crs": vec.crs().isValid(),
        "styled": styled,
        "features": vec.featureCount(),
        "renderer": vec.renderer().type() if vec.renderer() else None,
    }
    ok &= info["valid"] and info["crs"] and styled
    print(json.dumps(info))
    layers.insert(0, vec)
ms = QgsMapSettings()
ms.setLayers(layers)
ms.setDestinationCrs(vec.crs())
ms.setExtent(QgsRectangle(vec.extent()))
ms.setOutputSize(QSize(400, 400))
job = QgsMapRendererParallelJob(ms)
job.start()
job.waitForFinished()
job.renderedImage().save(png, "png")
sys.stdout.flush()
os._exit(0 if ok else 1)  # QGIS 3.22 can crash while tearing down layers at exit; results are already out
