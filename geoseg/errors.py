"""Exception classes raised by geoseg; the CLI turns each into a one-line message.

Every failure a user can cause is a ``GeosegError``; like rasterio's errors, a bad value is also a
``ValueError`` (``OptionError``, ``LabelError``), so callers that catch the builtin keep working.
"""

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


class LabelError(GeosegError, ValueError):
    """Training labels cannot be used with the imagery."""


class OutputError(GeosegError):
    """An output file (raster, vector layer, style, run manifest) cannot be written."""


class OutputLockedError(GeosegError):
    """Another process is writing the same output folder."""


class OptionError(GeosegError, ValueError):
    """An option or the environment it needs is unusable (device, engine, baseline name, scheduler, output
    path)."""


class InterruptedRun(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; its finished blocks are kept for a rerun.

    Like ``KeyboardInterrupt`` (not an ``Exception``), so that no ``except Exception`` on the way
    turns it into another error; the CLI reports it in one line and exits with 128 + the signal.
    """

    def __init__(self, signum: int, message: str | None = None) -> None:
        import signal

        self.signum = int(signum)
        super().__init__(message or f"interrupted by {signal.Signals(self.signum).name}")

    def __reduce__(self):
        return (type(self), (self.signum, str(self)))
