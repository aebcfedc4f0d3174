"""Exceptions whose message is one clear sentence a user can act on.

The CLI prints `stemgui: error: <message>` and exits non-zero; the GUI shows the message in a dialog.
Messages name the file and the problem, e.g. "song.mp3: not an audio file (unknown format)".
"""


class StemGUIError(Exception):
    """Base class for every error meant to be shown to a user."""


class AudioError(StemGUIError):
    """An audio file cannot be read or written, or holds unusable samples."""


class ModelError(StemGUIError):
    """A model file or card is missing, corrupt or incompatible."""


class DatasetError(StemGUIError):
    """A dataset folder is missing stems, has mismatched lengths or rates, or is empty."""


class ConfigError(StemGUIError):
    """A training or evaluation configuration is invalid."""


class DownloadError(StemGUIError):
    """A download failed or its checksum did not match."""


class Cancelled(StemGUIError):
    """The user cancelled a long job; nothing half-written was left behind."""
