"""The record every data source returns, the data errors, and small helpers shared by the loaders.

Every loader hands back ``MotionClip``s in one convention: SMPL-24 joint positions, 60 fps, y-up,
metres, feet on the floor (y = 0 at contact), plus a ``take_id`` that names the performance the clip
comes from, so that the train/validation split can keep whole takes on one side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.clock import MOTION_FPS
from engine.postprocess import resample_joints
from engine.skeleton import FOOT_JOINTS, NUM_JOINTS
from training.errors import DataError, DataFormatError

# Bump when any loader's output changes for the same input: it is part of every cache key.
PREPROCESS_VERSION = 2  # 2: CMU frame rates from CMU's listing (the salsa is 60 fps), CC_Base rig


@dataclass(eq=False)  # compared by identity: equality of arrays is not a clip's identity
class MotionClip:
    """One continuous piece of motion capture, in the training convention.

    joints:          (T, 24, 3) float32 SMPL joint positions, 60 fps, y-up, metres.
    name:            unique name of the clip (e.g. ``60_01`` or an AIST++ sequence name).
    take_id:         the performance the clip comes from: clips sharing it never straddle a split
                     (a salsa leader and follower of the same take; overlapping slices of one sequence).
    source:          which loader made it: ``aistpp``, ``bailando_json``, ``bvh``, ``aistpp_csv``.
    fps:             always 60 after loading (kept explicit for consumers).
    music_path:      the song this motion was danced to, where there is one and it is on disk.
    music_offset_s:  where in ``music_path`` frame 0 of the clip falls (slices start mid-song).
    music_features:  (M, 438) float32 music features at ``music_fps`` where the source stores them.
    music_fps:       frame rate of ``music_features``.
    split:           the split the source itself prescribes (``train``/``val``/``test``) or None.
    style:           the dance style of the take (``training.data.styles.STYLES``), None when unknown.
    meta:            free-form facts (source path, rig, scale factor, ...).
    """

    joints: np.ndarray
    name: str
    take_id: str
    source: str
    fps: float = MOTION_FPS
    music_path: Path | None = None
    music_offset_s: float = 0.0
    music_features: np.ndarray | None = None
    music_fps: float = MOTION_FPS
    split: str | None = None
    style: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        j = np.asarray(self.joints)
        if j.ndim != 3 or j.shape[1:] != (NUM_JOINTS, 3):
            raise DataFormatError(f"clip {self.name!r}: joints must be (T, 24, 3), got {j.shape}")
        self.joints = np.ascontiguousarray(j, dtype=np.float32)
        if self.music_features is not None:
            self.music_features = np.ascontiguousarray(self.music_features, dtype=np.float32)

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / float(self.fps)


def files_in(folder: str | Path, suffix: str, what: str) -> list[Path]:
    """The ``*<suffix>`` files of ``folder``, sorted by name; DataError when the folder is missing or
    holds none (``what`` names the kind of folder in the message)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what} folder not found: {folder}")
    files = sorted(folder.glob(f"*{suffix}"))
    if not files:
        raise DataError(f"no {suffix} files in {folder}")
    return files


def resample_positions(x: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linear resampling of positions along axis 0 inside the source's time span (120 -> 60 is exact
    decimation, 30 -> 60 inserts midpoints). Bone lengths shrink a little at inserted frames, which is
    why loaders impose lengths afterwards or check them."""
    return resample_joints(x, src_fps, dst_fps, within_span=True)


def floor_height(joints: np.ndarray, percentile: float = 1.0) -> float:
    """Height of the floor under a clip (T, 24, 3): a low percentile of the per-frame lowest foot joint.

    The minimum would do for clean capture; a percentile keeps one glitched frame from lifting the
    whole take into the air. Contact frames are the majority in dance, so the 1st percentile lies
    within the spread of contact heights.
    """
    lowest = np.asarray(joints)[:, FOOT_JOINTS, 1].min(axis=1)  # (T,)
    return float(np.percentile(lowest, percentile))


def ground_to_floor(joints: np.ndarray) -> np.ndarray:
    """Shift a clip vertically so that the feet touch y = 0 when in contact."""
    out = np.array(joints, dtype=np.float64, copy=True)
    out[..., 1] -= floor_height(out)
    return out
