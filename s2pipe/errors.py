"""The one exception hierarchy for problems a user can fix.

Every class derives from :class:`S2PipeError`; the command line shows its message as one
line ``Error: ...`` with exit status 1. Each also inherits the builtin that fits, so
library callers can catch ``FileNotFoundError`` or ``ValueError`` as usual. Any other
exception escaping s2pipe is a bug.
"""

from __future__ import annotations


class S2PipeError(Exception):
    """A problem with the user's input, options or outputs; the message says what to do."""

    def __str__(self) -> str:  # one line, whatever the cause held
        return " ".join(super().__str__().split())


class InputNotFoundError(S2PipeError, FileNotFoundError):
    """An input path (product, band file, label file, checkpoint) does not exist."""


class SafeFormatError(S2PipeError, ValueError):
    """A product is not a readable Sentinel-2 L2A SAFE (or stack) as s2pipe expects."""


class MissingBandError(SafeFormatError):
    """A band file named in the product metadata is missing or unreadable."""


class RadiometryError(SafeFormatError):
    """The radiometric convention the metadata states is contradicted by the pixels."""


class RemoteError(S2PipeError, OSError):
    """A URL cannot be reached, read or written (access denied, host unreachable, time-out)."""


class RasterError(S2PipeError, ValueError):
    """A raster given as input (a class map, a label raster) is unreadable or not what the
    command needs (band count, data type, no CRS, values out of range)."""


class LabelError(S2PipeError, ValueError):
    """Label vectors or rasters cannot be used (no CRS, no overlap, unknown classes...)."""


class TileError(S2PipeError, ValueError):
    """A training tile or tile folder is malformed."""


class CheckpointError(S2PipeError, ValueError):
    """A model checkpoint is unreadable or does not fit the input."""


class TaskError(S2PipeError, RuntimeError):
    """Tasks run on a cluster failed; the message lists each one's error."""


class OutputExistsError(S2PipeError, FileExistsError):
    """An output exists and ``overwrite`` was not asked for."""


class OutputError(S2PipeError, OSError):
    """An output location cannot be created or written (not a folder, no permission...)."""


class DiskFullError(OutputError):
    """The disk (or quota) filled up while an output was written; nothing of it is left."""


class OptionError(S2PipeError, ValueError):
    """Options are inconsistent in a way the command line could not check by itself."""


class AreaError(S2PipeError, ValueError):
    """An area of interest cannot be used (no CRS, empty, unreadable)."""


class CatalogError(S2PipeError, OSError):
    """A STAC catalogue cannot be searched (down, answering errors, not a catalogue)."""


class NoScenesError(S2PipeError, LookupError):
    """A search found no scene; the message says what was searched."""
