"""Music features of a song, as the engine and the training package use them.

    decode.py      the song file checked, decoded, validated and resampled
    separation.py  harmonic/percussive separation (HPSS) with a fast running median
    recipe.py      the 438-d Bailando feature recipe (its docstring has the column table) and the beats
    cache.py       the on-disk cache, keyed by the file's content and checked against the song

``extract_features`` (7.5 fps features + 60 fps beats) and ``features_60fps`` are the entry points.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidOptionError
from ..files import file_sha256
from .cache import (
    _cache_path,
    _cache_read,
    _cache_write,
    _header_duration,
    _resolve_cache_dir,
    default_cache_dir,
)
from .decode import (
    AUDIO_EXTENSIONS,
    MAX_DURATION_S,
    MAX_PEAK,
    MIN_DURATION_S,
    SILENCE_DBFS,
    _Song,
    check_song_file,
    load_audio,
)
from .recipe import (
    BEAT_COLUMN,
    BEAT_SR,
    CHROMA_COLUMNS,
    DELTA_COLUMNS,
    FEATURE_DIM,
    FEATURE_MODES,
    FEATURE_VERSION,
    HOP_LENGTH,
    MFCC_COLUMNS,
    ONSET_COLUMN,
    RHYTHM_COLUMNS,
    TEMPOGRAM_COLUMNS,
    TOKEN_SR,
    compute_beats,
    compute_features,
)
from .separation import hpss, hpss_masks

__all__ = [
    "AUDIO_EXTENSIONS", "BEAT_COLUMN", "BEAT_SR", "CHROMA_COLUMNS", "DELTA_COLUMNS", "FEATURE_DIM",
    "FEATURE_MODES", "FEATURE_VERSION", "HOP_LENGTH", "MAX_DURATION_S", "MAX_PEAK", "MFCC_COLUMNS",
    "MIN_DURATION_S", "ONSET_COLUMN", "RHYTHM_COLUMNS", "SILENCE_DBFS", "TEMPOGRAM_COLUMNS", "TOKEN_SR",
    "MusicFeatures", "ProgressFn", "check_song_file", "compute_beats", "compute_features", "default_cache_dir",
    "extract_features", "features_60fps", "hpss", "hpss_masks", "load_audio",
]

ProgressFn = Callable[[float, str], None]

ProgressFn = Callable[[float, str], None]




@dataclass(frozen=True)
class MusicFeatures:
    """Features of one song.

    features:      (N, 438) float32 at 7.5 fps, N = 1 + samples_at_3840 // 512.
    beats:         (K,) int64 beat frame indices at 60 fps (official 60 fps recipe), or None when
                   extracted with ``with_beats=False``.
    duration_s:    length of the decoded song in seconds.
    mode:          "official" or "full".
    source_path:   the song file.
    content_hash:  sha256 (hex) of the file's bytes.
    """

    features: np.ndarray
    beats: np.ndarray | None
    duration_s: float
    mode: str
    source_path: str
    content_hash: str

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])


def _check_mode(mode: str) -> None:
    if mode not in FEATURE_MODES:
        raise InvalidOptionError(f"Unknown feature mode {mode!r}; use one of {', '.join(FEATURE_MODES)}.")


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def _start_request(
    path: str | os.PathLike, mode: str, cache_dir: str | os.PathLike | bool | None, progress: ProgressFn | None
) -> tuple[Path, str, Path | None]:
    """Check the mode and the song file, then identify the song for the cache:
    (path, content hash, cache folder or None for no cache)."""
    _check_mode(mode)
    path = check_song_file(path)
    _report(progress, 0.0, "reading the song")
    return path, file_sha256(path), _resolve_cache_dir(cache_dir)


def extract_features(
    path: str | os.PathLike,
    mode: str = "official",
    *,
    with_beats: bool = True,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: ProgressFn | None = None,
    min_duration_s: float = MIN_DURATION_S,
    max_duration_s: float = MAX_DURATION_S,
) -> MusicFeatures:
    """The 7.5 fps features of a song (and its 60 fps beats), cached on disk by content.

    cache_dir: None = ``$DANCE_CACHE_DIR`` or ``~/.cache/bailando-blender/features``; False = no cache.
    progress: optional ``progress(fraction, message)``.
    """
    path, content_hash, folder = _start_request(path, mode, cache_dir, progress)
    token_entry_path = _cache_path(folder, content_hash, f"tokens-{mode}") if folder else None
    beats_entry_path = _cache_path(folder, content_hash, "beats") if folder else None

    header_duration = _header_duration(path) if folder else None
    token_entry = _cache_read(token_entry_path, content_hash, "tokens", header_duration)
    beats_entry = _cache_read(beats_entry_path, content_hash, "beats", header_duration) if with_beats else None
    if token_entry is not None and float(token_entry["duration_s"]) > max_duration_s:
        token_entry = None  # let the decoder report the limit
    song = None
    if token_entry is None or (with_beats and beats_entry is None):
        song = _Song(path, min_duration_s, max_duration_s)

    with ThreadPoolExecutor(1) as background:
        # The 60 fps beat path is independent of the 7.5 fps features: run it alongside (its heavy parts
        # release the GIL), so the two take about as long as the slower one on a multi-core machine.
        beats_job = None
        if with_beats and beats_entry is None:
            _report(progress, 0.1, "finding beats (60 fps)")
            beats_job = background.submit(compute_beats, song.at(BEAT_SR), BEAT_SR)

        if token_entry is not None:
            features, duration_s = token_entry["values"].astype(np.float32), float(token_entry["duration_s"])
        else:
            _report(progress, 0.2, "computing 7.5 fps features")
            features, _ = compute_features(song.at(TOKEN_SR), TOKEN_SR, rhythm=(mode == "full"))
            duration_s = song.duration_s
            _cache_write(token_entry_path, content_hash, values=features, duration_s=np.array(duration_s))

        beats = None
        if beats_entry is not None:
            beats = beats_entry["values"].astype(np.int64)
        elif beats_job is not None:
            _report(progress, 0.6, "finding beats (60 fps)")
            beats = beats_job.result()
            _cache_write(beats_entry_path, content_hash, values=beats, duration_s=np.array(song.duration_s))
    _report(progress, 1.0, "music features ready")
    return MusicFeatures(
        features=features,
        beats=beats,
        duration_s=duration_s,
        mode=mode,
        source_path=str(path),
        content_hash=content_hash,
    )


def features_60fps(
    path: str | os.PathLike,
    mode: str = "official",
    *,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: ProgressFn | None = None,
    min_duration_s: float = MIN_DURATION_S,
    max_duration_s: float = MAX_DURATION_S,
) -> np.ndarray:
    """The full 438-d matrix at 60 fps (sr 30720): (M, 438) float32, M = 1 + samples // 512.

    Column 53 holds the beats (``extract_features(...).beats``). Both modes give the same matrix: the
    official 60 fps features have live rhythm columns; ``mode`` is validated for symmetry.
    """
    path, content_hash, folder = _start_request(path, mode, cache_dir, progress)
    entry_path = _cache_path(folder, content_hash, "frames60") if folder else None
    entry = _cache_read(entry_path, content_hash, "frames60", _header_duration(path) if folder else None)
    if entry is not None and float(entry["duration_s"]) <= max_duration_s:
        _report(progress, 1.0, "music features ready")
        return entry["values"].astype(np.float32)
    song = _Song(path, min_duration_s, max_duration_s)
    _report(progress, 0.1, "computing 60 fps features")
    features, beats = compute_features(song.at(BEAT_SR), BEAT_SR, rhythm=True)
    _cache_write(entry_path, content_hash, values=features, duration_s=np.array(song.duration_s))
    if folder is not None:  # the beats come for free here: save them for extract_features
        beats_path = _cache_path(folder, content_hash, "beats")
        if _cache_read(beats_path, content_hash, "beats", song.duration_s) is None:
            _cache_write(beats_path, content_hash, values=beats, duration_s=np.array(song.duration_s))
    _report(progress, 1.0, "music features ready")
    return features
