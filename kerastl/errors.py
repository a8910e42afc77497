"""Typed errors. Library code raises these; only the CLI turns them into `Error: ...` and exit status 2."""


class KerastlError(Exception):
    """Base class of every error kerastl raises on bad input.

    What to do about it is said in the caller's terms: `str(error)` ends with `python` (e.g. "pass
    overwrite=True"), the CLI prints `cli_message`, which ends with `cli` (e.g. "pass --overwrite").

    Example:
        >>> error = RunDirError("'runs/a' holds a run; ", python="pass overwrite=True.", cli="pass --overwrite.")
        >>> str(error), error.cli_message
        ("'runs/a' holds a run; pass overwrite=True.", "'runs/a' holds a run; pass --overwrite.")
    """

    def __init__(self, message: str, python: str = "", cli: str = ""):
        super().__init__(message + python)
        self.cli_message = message + (cli or python)


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
