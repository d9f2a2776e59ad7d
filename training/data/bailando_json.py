"""Bailando's preprocessed AIST++ JSON files (``data/aistpp_train_wav/*.json``, ``aistpp_test_full_wav``).

Each file is ``{"id": ..., "music_array": T_m x 438, "dance_array": T x 72}``: music features and
absolute SMPL joints (from FK with the male model, y-up, metres), both at 60 fps. Train files have
``T_m == T`` (truncated to the shorter); test files keep the whole song (``T_m >= T``).

The joints are used as they are (no grounding by default), so that a model trained on them sees exactly
what the official code trained on; ``ground=True`` puts the feet on y = 0 like the other sources.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.errors import DataError, DataFormatError

from .cache import cached_arrays
from .clip import MotionClip, files_in, ground_to_floor

MUSIC_DIM = 438

# Folder names of the official preprocessing -> the split they hold.
_FOLDER_SPLITS = {"aistpp_train_wav": "train", "aistpp_test_full_wav": "test"}


def _parse(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(record, dict) or "dance_array" not in record or "music_array" not in record:
        raise DataFormatError(f"{path}: expected a Bailando JSON object with 'music_array' and 'dance_array'")
    try:
        dance = np.asarray(record["dance_array"], dtype=np.float64)
        music = np.asarray(record["music_array"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: 'dance_array'/'music_array' are not numeric tables ({exc})") from exc
    if dance.ndim != 2 or dance.shape[1] != 72 or dance.shape[0] == 0:
        raise DataFormatError(f"{path}: 'dance_array' must be T x 72 (24 joints x 3), got {dance.shape}")
    if music.ndim != 2 or music.shape[1] != MUSIC_DIM:
        raise DataFormatError(f"{path}: 'music_array' must be T x {MUSIC_DIM}, got {music.shape}")
    if not (np.all(np.isfinite(dance)) and np.all(np.isfinite(music))):
        raise DataFormatError(f"{path}: contains NaN or infinite values")
    name = str(record.get("id") or path.stem)
    return name, dance.reshape(-1, 24, 3), music


def load_bailando_json(
    path: str | Path,
    *,
    ground: bool = False,
    music_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> MotionClip:
    """One Bailando JSON -> ``MotionClip`` with ``music_features`` (T_m, 438) at 60 fps."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Bailando JSON file not found: {path}")
    name_box: list[str] = []

    def compute() -> dict[str, np.ndarray]:
        name, joints, music = _parse(path)
        name_box.append(name)
        if ground:
            joints = ground_to_floor(joints)
        return {"joints": joints.astype(np.float32), "music": music.astype(np.float32),
                "name": np.array(name)}

    arrays = cached_arrays(cache_dir, path, f"bailando_json|ground={ground}", compute)
    name = str(arrays["name"]) if "name" in arrays else (name_box[0] if name_box else path.stem)
    sequence = name.removesuffix(".json")
    music_path = None
    fields = sequence.split("_")
    if music_dir is not None and len(fields) >= 5:  # AIST++ name: field 4 is the music id (mBR0)
        candidate = Path(music_dir) / f"{fields[4]}.wav"
        music_path = candidate if candidate.is_file() else None
    return MotionClip(
        joints=arrays["joints"],
        name=sequence,
        take_id=sequence,
        source="bailando_json",
        music_path=music_path,
        music_features=arrays["music"],
        music_fps=60.0,
        split=_FOLDER_SPLITS.get(path.parent.name),
        meta={"path": str(path), "grounded": ground},
    )


def load_bailando_json_dir(
    folder: str | Path,
    *,
    ground: bool = False,
    music_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> list[MotionClip]:
    """Every ``*.json`` in ``folder`` (sorted by name)."""
    files = files_in(folder, ".json", "Bailando JSON")
    return [load_bailando_json(f, ground=ground, music_dir=music_dir, cache_dir=cache_dir) for f in files]
