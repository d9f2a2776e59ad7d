"""Every error the engine reports to a user, in one place.

The convention, for the engine, the training package (``training/errors.py``) and the add-on
(``addon/blender/errors.py``): a user-facing failure raises a ``DanceError`` subclass whose message says
what is wrong and what to do; options are checked by a ``check()`` method (or ``check_*`` function) that
raises ``InvalidOptionError`` and returns nothing, before any slow work. The command line and the
add-on turn any ``DanceError`` into one clear line (never a traceback) and write nothing on failure.
"""

from __future__ import annotations


class DanceError(Exception):
    """Base class of every error the engine reports to a user."""


# --- audio -------------------------------------------------------------------------------------------
class AudioError(DanceError):
    """The song cannot be turned into music features."""


class NotAudioError(AudioError):
    """The file is not an audio file at all (wrong extension or content)."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The song file does not exist."""


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


class ModelNotFoundError(CheckpointError):
    """The model folder does not exist."""


class NotAModelFolderError(CheckpointError):
    """The folder exists but holds no model of ours."""


class MissingModelFileError(CheckpointError):
    """One of the model files is missing."""


class UnsupportedFormatError(CheckpointError):
    """The model was written by a newer (or unknown) version of the format."""


class WeightsMismatchError(CheckpointError):
    """The weights do not fit the config (missing / unexpected names or wrong shapes)."""


class NonFiniteWeightsError(CheckpointError):
    """Some weights are NaN or infinite."""


# --- motion and files --------------------------------------------------------------------------------
class InvalidMotionError(DanceError, ValueError):
    """Joint positions or rotations have the wrong shape or hold NaN/inf values."""


class BvhError(DanceError):
    """A BVH file cannot be read or written."""


class BvhFormatError(BvhError):
    """A BVH file is malformed (the message says where)."""


class OutputError(DanceError):
    """An output folder or file cannot be written (missing, a file, read-only, full disk)."""


# --- generation --------------------------------------------------------------------------------------
class InvalidOptionError(DanceError):
    """An option (code number, fps, temperature, ...) is out of range."""


class Cancelled(DanceError):
    """The user cancelled a long-running operation; nothing was written."""
