"""``Dance``: the one result every consumer takes (exporters, the Blender layer, evaluation).

Nothing downstream re-derives what is stored here; rotations are solved once (``with_rotations``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import InvalidOptionError
from .skeleton import NUM_JOINTS, InvalidMotionError


@dataclass
class Dance:
    """A generated (or loaded) dance.

    joints:        (T, 24, 3) float32 world joint positions, metres, y-up, SMPL order.
    fps:           frame rate of ``joints`` (60 for Bailando models).
    codes_up:      (N,) int64 upper-body VQ codes, one per 8 frames at 60 fps of the dance as decoded
                   (beat sync then re-times it; ``meta["beat_sync"]`` says how).
    codes_down:    (N,) int64 lower-body VQ codes.
    music_beats:   frame indices (at ``fps``) of the song's beats, or None.
    song_path:     the song the dance was generated for, or None.
    rotations:     (T, 24, 4) float64 local joint rotations, quaternions w-first, on ``rest_joints``.
    translation:   (T, 3) root translation such that FK(rotations, translation, rest_joints) ~ joints.
    rest_joints:   (24, 3) rest skeleton the rotations refer to.
    meta:          free-form summary data (model name, sampling options, timings).
    """

    joints: np.ndarray
    fps: float
    codes_up: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    codes_down: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    music_beats: np.ndarray | None = None
    song_path: str | None = None
    rotations: np.ndarray | None = None
    translation: np.ndarray | None = None
    rest_joints: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / float(self.fps)

    def replace(self, **changes: Any) -> Dance:
        return replace(self, **changes)

    def checked_motion(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rotations (T, 24, 4), translation (T, 3), rest_joints (24, 3)) as float64, checked: what the
        BVH writer and the Blender layer key. Raises ``InvalidMotionError`` when the dance has no
        rotations or they are not a motion (shapes, NaN, zero quaternions), ``InvalidOptionError`` when
        ``fps`` is not positive."""
        if self.rotations is None or self.translation is None or self.rest_joints is None:
            raise InvalidMotionError("the dance has no joint rotations yet: generate it with rotations enabled")
        return check_motion(self.rotations, self.translation, self.rest_joints, self.fps)


def check_motion(rotations: np.ndarray, translation: np.ndarray, rest_joints: np.ndarray,
                 fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one check of a rotation motion (see ``Dance.checked_motion``); returns float64 arrays."""
    rotations = np.asarray(rotations, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    if rotations.ndim != 3 or rotations.shape[1:] != (NUM_JOINTS, 4) or rotations.shape[0] < 1:
        raise InvalidMotionError(f"rotations must have shape (frames, {NUM_JOINTS}, 4), got {rotations.shape}")
    if translation.shape != (rotations.shape[0], 3):
        raise InvalidMotionError(f"translation must have shape ({rotations.shape[0]}, 3), got {translation.shape}")
    if rest_joints.shape != (NUM_JOINTS, 3):
        raise InvalidMotionError(f"rest_joints must have shape ({NUM_JOINTS}, 3), got {rest_joints.shape}")
    for name, arr in (("rotations", rotations), ("translation", translation), ("rest_joints", rest_joints)):
        if not np.all(np.isfinite(arr)):
            raise InvalidMotionError(f"{name} contain NaN or infinite values")
    if np.any(np.linalg.norm(rotations, axis=-1) < 1e-6):
        raise InvalidMotionError("rotations contain zero quaternions")
    if not (np.isfinite(fps) and fps > 0):
        raise InvalidOptionError(f"fps must be a positive number, got {fps}")
    return rotations, translation, rest_joints
