"""Typed errors. Library code raises these; only the CLI turns them into `Error: ...` and exit status 2."""


class KerastlError(Exception):
    """Base class of every error kerastl raises on bad input."""


class ConfigError(KerastlError):
    """A configuration key, value or override is invalid."""


class DataError(KerastlError):
    """A data file, folder or array cannot be read as labelled images."""


class WeightsError(KerastlError):
    """Backbone weights cannot be found, fetched or loaded."""


class RunDirError(KerastlError):
    """A run directory is missing, incomplete or would be overwritten."""


class ExportError(KerastlError):
    """A model cannot be exported or loaded for prediction."""
