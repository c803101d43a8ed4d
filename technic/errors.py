"""User-facing error types.

`TechnicError` and its subclasses carry a message meant for a person; the CLI
prints it without a traceback and exits non-zero.
"""


class TechnicError(Exception):
    """Base class of errors caused by user input (files, options, records)."""


class DataError(TechnicError):
    """A data file or record is malformed: the message names file, row and column."""


class OrderError(TechnicError):
    """A bar arrived out of order or duplicated for a symbol; state is unchanged."""


class RegistryError(TechnicError):
    """A model registry operation failed (missing version, tampered artifact, ...)."""
