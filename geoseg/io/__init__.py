"""Reading inputs: scenes (``raster``), band names and roles, acquisition dates, training chips and
labels; and the staging folder with atomic writes every output goes through (``staging``)."""
