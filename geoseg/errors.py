"""Exception classes raised by geoseg; the CLI turns each into a one-line message."""

from __future__ import annotations


class GeosegError(Exception):
    """Base class of every error geoseg reports to the user."""


class SceneError(GeosegError):
    """A scene cannot be used: missing, unreadable, not georeferenced."""


class ModelMismatchError(GeosegError):
    """The imagery does not match what the model was trained on (bands, dtype, range)."""


class CheckpointError(GeosegError):
    """A checkpoint file is missing, corrupt or of an unknown format."""


class OutputExistsError(GeosegError):
    """The output folder already holds a finished run with different inputs."""


class LabelError(GeosegError):
    """Training labels cannot be used with the imagery."""


class OutputError(GeosegError):
    """An output file (raster, vector layer, style, run manifest) cannot be written."""
