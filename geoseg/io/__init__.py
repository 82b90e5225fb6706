"""Reading and writing geoseg's rasters and vector layers."""
