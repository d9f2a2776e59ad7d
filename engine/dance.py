"""``Dance``: the one result every consumer takes (exporters, the Blender layer, evaluation).

Nothing downstream re-derives what is stored here; rotations are solved once (``with_rotations``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


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
