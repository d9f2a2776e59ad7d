"""Every error the training package reports to a user (all ``DanceError``s: one clear line, no traceback;
the convention is the engine's, see ``engine/errors.py``)."""

from __future__ import annotations

from engine.errors import DanceError


class TrainingError(DanceError):
    """Training cannot go on (bad config, diverged loss, incompatible checkpoint)."""


class TrainingDiverged(TrainingError):
    """The loss, the weights or the optimizer state became NaN or infinite."""


class ConfigError(TrainingError):
    """A training config file or override is wrong (unknown key, bad value, missing setting)."""


class DataError(DanceError):
    """A training data source cannot be read (missing folder, wrong layout, malformed file)."""


class DataFormatError(DataError):
    """A data file exists but its content is not what the loader expects."""


class UnsafeDataError(DataError):
    """A pickled data file tried to import or call something outside the allow-list."""


class EvaluationError(DanceError):
    """The folders cannot be evaluated (empty, unreadable file, wrong shape or frame rate)."""
