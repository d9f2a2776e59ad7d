"""The feature cache: entries keyed by the song file's content, checked against the song before use
(an entry that cannot be this song's is recomputed and overwritten), written atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..files import atomic_file
from .decode import _UNKNOWN_FRAMES
from .recipe import BEAT_SR, FEATURE_DIM, FEATURE_VERSION, TOKEN_SR, _num_frames

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    env = os.environ.get("DANCE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "bailando-blender" / "features"


def _resolve_cache_dir(cache_dir: str | os.PathLike | bool | None) -> Path | None:
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        return default_cache_dir()
    return Path(cache_dir)


def _cache_path(cache_dir: Path, content_hash: str, kind: str) -> Path:
    return cache_dir / f"{content_hash[:40]}-{kind}-v{FEATURE_VERSION}.npz"


# What each kind of cache entry holds: (sample rate its frames count at, feature columns or None for beats).
_ENTRY_KINDS = {"tokens": (TOKEN_SR, FEATURE_DIM), "frames60": (BEAT_SR, FEATURE_DIM), "beats": (BEAT_SR, None)}
# How far an entry's song duration may differ from the header's (decoders differ by a few ms at the ends).
_DURATION_SLACK_S = 0.1


def _header_duration(path: Path) -> float | None:
    """The song's duration from its header alone (no decoding), or None when the header does not say."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info.duration if 0 < info.frames < _UNKNOWN_FRAMES and info.samplerate > 0 else None


def _entry_problem(entry: dict, kind: str, header_duration_s: float | None) -> str | None:
    """Why a cache entry cannot be what this song gives (shape, frame count for its duration, dtype,
    finite values, beats inside the song), or None when it can."""
    sr, columns = _ENTRY_KINDS[kind]
    values, duration = entry["values"], float(entry["duration_s"])
    if not (np.isfinite(duration) and duration > 0):
        return f"duration {duration}"
    if header_duration_s is not None and abs(duration - header_duration_s) > _DURATION_SLACK_S:
        return f"duration {duration:.3f} s for a song of {header_duration_s:.3f} s"
    frames = _num_frames(int(round(duration * sr)))  # frames of the song at this rate (+-1: resampling)
    if columns is not None:
        if values.dtype != np.float32 or values.ndim != 2 or values.shape[1] != columns:
            return f"values {values.dtype} {values.shape}, expected float32 (N, {columns})"
        if abs(values.shape[0] - frames) > 1:
            return f"{values.shape[0]} frames for a {duration:.2f} s song ({frames} expected)"
        if not np.all(np.isfinite(values)):
            return "non-finite values"
        return None
    if values.ndim != 1 or values.dtype.kind not in "iu":
        return f"beats {values.dtype} {values.shape}, expected integer frame indices (K,)"
    if values.size and (values.min() < 0 or values.max() > frames or np.any(np.diff(values) <= 0)):
        return f"beat frames outside 0..{frames} or out of order"
    return None


def _cache_read(path: Path | None, content_hash: str, kind: str, header_duration_s: float | None) -> dict | None:
    """The arrays of a cache entry, or None when absent or unusable: an entry that is unreadable, misses a
    key, or cannot be what this song gives (``_entry_problem``) is ignored, so it is recomputed and
    overwritten (healed)."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            entry = {name: npz[name] for name in ("content_hash", "version", "values", "duration_s")}
        if str(entry["content_hash"]) != content_hash or int(entry["version"]) != FEATURE_VERSION:
            return None
        problem = _entry_problem(entry, kind, header_duration_s)
    except Exception as exc:  # any unreadable entry is recomputed and rewritten
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        log.warning("ignoring feature cache entry %s (%s); recomputing it", path, problem)
        return None
    return entry


def _cache_write(path: Path | None, content_hash: str, **arrays: np.ndarray) -> None:
    """Write an entry atomically (temp file in the same folder, then os.replace); a cache that cannot
    be written only costs speed, so failures are logged, not raised."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, content_hash=np.array(content_hash), version=np.array(FEATURE_VERSION), **arrays)
    except OSError as exc:
        log.warning("could not write feature cache entry %s (%s)", path, exc)
