"""geoseg: segment large satellite and drone GeoTIFF scenes at scale."""

__version__ = "0.1.0"
