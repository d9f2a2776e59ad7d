"""AIST++ ground-truth slices stored as CSV joint positions (the layout published with EDGE).

Each file ``<sequence>_slice<K>.csv`` holds (150, 72) = 5 s of SMPL joint positions at 30 fps, z-up,
as (x, -z_aist, y_aist), starting K * 0.5 s into the sequence. Turning one into a training clip:

1. z-up -> AIST++ y-up: ``x, y, z = x, z_csv, -y_csv``.
2. Pelvis offset: these joints come from forward kinematics that puts joint 0 at ``transl`` itself,
   whereas SMPL (and Bailando's data) puts it at ``J_0 + transl`` with the root rotation applied about
   J_0, so every child is at ``X_0 + R_0 (J_j - J_0)`` in both. The two therefore differ by the
   *constant, unrotated* male ``J_0`` (see ``engine.skeleton.forward_kinematics_matrices``), which is
   what we add. (Adding a rotated J_0 would move the body in a 3 cm circle as the dancer turns.)
3. 30 -> 60 fps, keeping bone lengths: root linearly, bone directions by slerp (``bones.resample_skeleton``).
4. Feet on the floor (y = 0 at contact), unless ``ground=False``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from engine.clock import MOTION_FPS
from engine.skeleton import REST_JOINTS
from training.errors import DataError, DataFormatError

from .bones import resample_skeleton
from .cache import cached_arrays
from .clip import MotionClip, files_in, ground_to_floor

CSV_FPS = 30.0
SLICE_STRIDE_S = 0.5  # slice K starts K * 0.5 s into its sequence

_SLICE_NAME = re.compile(r"^(?P<seq>.+)_slice(?P<k>\d+)$")


def csv_to_yup(raw: np.ndarray) -> np.ndarray:
    """(T, 72) z-up CSV rows -> (T, 24, 3) y-up SMPL joints with the true SMPL pelvis (30 fps)."""
    zup = np.asarray(raw, dtype=np.float64).reshape(-1, 24, 3)
    yup = np.stack([zup[..., 0], zup[..., 2], -zup[..., 1]], axis=-1)
    return yup + REST_JOINTS[0]


def _read_csv(path: Path) -> np.ndarray:
    try:
        raw = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataFormatError(f"{path}: not a comma-separated table of numbers ({exc})") from exc
    if raw.shape[1] != 72 or raw.shape[0] < 2:
        raise DataFormatError(f"{path}: expected rows of 72 numbers (24 joints x 3), got {raw.shape}")
    if not np.all(np.isfinite(raw)):
        raise DataFormatError(f"{path}: contains NaN or infinite values")
    return raw


def load_csv_clip(
    path: str | Path,
    *,
    ground: bool = True,
    music_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> MotionClip:
    """One AIST++ CSV slice -> a 60 fps y-up ``MotionClip`` whose take id is its AIST++ sequence."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"AIST++ CSV clip not found: {path}")

    def compute() -> dict[str, np.ndarray]:
        joints = resample_skeleton(csv_to_yup(_read_csv(path)), CSV_FPS, MOTION_FPS)
        if ground:
            joints = ground_to_floor(joints)
        return {"joints": joints.astype(np.float32)}

    arrays = cached_arrays(cache_dir, path, f"aistpp_csv|ground={ground}", compute)
    match = _SLICE_NAME.match(path.stem)
    sequence = match["seq"] if match else path.stem
    offset = int(match["k"]) * SLICE_STRIDE_S if match else 0.0
    music_path = None
    fields = sequence.split("_")
    if music_dir is not None and len(fields) >= 5:
        candidate = Path(music_dir) / f"{fields[4]}.wav"
        music_path = candidate if candidate.is_file() else None
    return MotionClip(
        joints=arrays["joints"],
        name=path.stem,
        take_id=sequence,
        source="aistpp_csv",
        music_path=music_path,
        music_offset_s=offset,
        meta={"path": str(path), "src_fps": CSV_FPS, "grounded": ground},
    )


def load_csv_dir(
    folder: str | Path,
    *,
    ground: bool = True,
    music_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> list[MotionClip]:
    """Every ``*.csv`` slice in ``folder`` (sorted by name)."""
    files = files_in(folder, ".csv", "AIST++ CSV")
    return [load_csv_clip(f, ground=ground, music_dir=music_dir, cache_dir=cache_dir) for f in files]
