"""Errors of ``geoseg change``."""

from geoseg.errors import GeosegError


class ChangeInputError(GeosegError):
    """Two dates cannot be compared (incomplete run, different models/classes, no overlap, no date)."""
