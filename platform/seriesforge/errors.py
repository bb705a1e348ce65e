"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero.

Every message names *what* (a field, a file, a row, a parameter) and *where*.
"""


class SeriesforgeError(Exception):
    """Base of all user-facing errors."""


class ConfigError(SeriesforgeError, ValueError):
    """A config value is unknown, of the wrong type or out of range; the message names its dotted path."""


class DataError(SeriesforgeError, ValueError):
    """Input data is missing, unreadable or malformed; the message names the file and row."""


class CheckpointError(SeriesforgeError, ValueError):
    """A checkpoint is incomplete, corrupt or of another family."""


class RequestError(SeriesforgeError, ValueError):
    """A generation request is invalid (length, n, caption, ...); the message names the parameter."""


class EndpointError(SeriesforgeError):
    """A Serve endpoint refused or failed a request, or could not be reached; `status` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class JobsError(SeriesforgeError):
    """The Ray Jobs API could not be reached, refused a request, or does not know the job id."""
