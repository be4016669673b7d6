"""User-facing errors.

Every error a user can cause (bad file, bad config, existing output) is a ``VipsegError``. The
CLI catches it once and prints ``error: <message>`` on one line with ``exit_code`` (2 for bad
input, 1 for failures at run time); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations


class VipsegError(Exception):
    """Base class of all errors meant for the user; the message is one line."""

    exit_code = 2


class ConfigError(VipsegError):
    """A config file or override is unknown, malformed or of the wrong type."""


class DataError(VipsegError):
    """A dataset file (COCO JSON, image, object bank) is missing or invalid."""


class OutputExistsError(VipsegError):
    """An output already exists and ``--force`` was not given."""


class OutputError(VipsegError):
    """An output cannot be written where asked (e.g. its folder is a file or not writable)."""


class TrainingError(VipsegError):
    """Training cannot go on (e.g. a non-finite loss)."""

    exit_code = 1
