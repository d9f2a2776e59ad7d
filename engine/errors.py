"""Exception types with messages a user can act on.

The command line and the add-on turn any ``DanceError`` into one clear line (never a traceback)
and write nothing on failure.
"""

from __future__ import annotations


class DanceError(Exception):
    """Base class of every error the engine reports to a user."""


# --- audio -------------------------------------------------------------------------------------------
class AudioError(DanceError):
    """The song cannot be turned into music features."""


class NotAudioError(AudioError):
    """The file is not an audio file at all (wrong extension or content)."""


class AudioDecodeError(AudioError):
    """The file looks like audio but cannot be decoded (corrupt, truncated, unsupported codec)."""


class SilentAudioError(AudioError):
    """The audio is silent (or nearly), so there is no music to dance to."""


class AudioTooShortError(AudioError):
    """The audio is shorter than the model needs to make one token."""


class AudioTooLongError(AudioError):
    """The audio exceeds the length limit."""


# --- models and checkpoints --------------------------------------------------------------------------
class ModelError(DanceError):
    """A model folder or checkpoint cannot be used."""


class CheckpointError(ModelError):
    """A checkpoint file is missing, malformed, or does not match its config."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint tried to import or call something outside the allow-list."""


# --- generation --------------------------------------------------------------------------------------
class InvalidOptionError(DanceError):
    """An option (code number, fps, temperature, ...) is out of range."""


class Cancelled(DanceError):
    """The user cancelled a long-running operation; nothing was written."""
