"""Accompaniment for motion that has no music: a synthesised drum-and-bass track on the motion's beats.

The real motion data here (CMU BVH, AIST++ CSV slices) comes without its music, so a GPT trained on it
could never learn to follow music. Instead of pairing it with unrelated songs (which would teach the
GPT that music and motion are independent), each clip gets a track whose *musical beats sit on the
motion's kinematic beats*:

1. motion beats = minima of the smoothed mean joint speed (``engine.beats.motion_beats``);
2. a steady tempo and phase are fitted to them (``fit_beat_grid``: the period and phase that best
   explain the beats, scored by an F-measure of matched beats), and every grid beat with a motion beat
   close by is snapped onto it;
3. a track is synthesised on those beats: kick and hi-hat on every beat, snare on beats 2 and 4 of
   each bar, a bass note on each beat and a sustained chord per bar (I-V-vi-IV), so that the chroma
   and timbre columns carry something too. Nothing percussive sits between beats: the onset envelope
   of the feature recipe takes the median over mel bands, so broadband hits there would read as beats;

4. it is written as a WAV (cached by the clip's content) and its features are computed with
   ``engine.audio`` like any song, so the GPT sees real audio features.

What the GPT can learn from this is the link "drum hits <-> motion beats"; it cannot learn genre or
style from music it never heard. Users with AIST++ train on the real pairs instead. The engine uses the
same track where a model trained on it needs music and the user has none (a duet without a song).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .beats import motion_beats
from .files import atomic_file

SAMPLE_RATE = 22050
SYNTH_VERSION = 1  # bump when the sound changes: part of the cache key
MIN_PERIOD_S, MAX_PERIOD_S = 0.33, 0.86  # 180 .. 70 beats per minute (the beat tracker favours ~120)


@dataclass
class BeatGrid:
    """A steady beat fitted to motion beats; ``beats`` (frames, float) are snapped onto motion beats."""

    period: float  # frames per beat
    phase: float  # frame of the first grid beat
    beats: np.ndarray  # (K,) beat frames (60 fps clock of the motion)
    score: float  # F-measure of motion beats vs grid beats

    @property
    def bpm(self) -> float:
        return 60.0 * 60.0 / self.period


def _grid_score(beats: np.ndarray, grid: np.ndarray, tolerance: float) -> float:
    if grid.size == 0 or beats.size == 0:
        return 0.0
    d = np.abs(beats[:, None] - grid[None, :])  # (M, K)
    recall = float((d.min(axis=1) <= tolerance).mean())  # motion beats that have a grid beat
    precision = float((d.min(axis=0) <= tolerance).mean())  # grid beats that have a motion beat
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def fit_beat_grid(beat_frames: np.ndarray, n_frames: int, fps: float = 60.0) -> BeatGrid:
    """Fit a steady tempo and phase to motion beat frames, then snap grid beats onto nearby motion beats."""
    beats = np.sort(np.asarray(beat_frames, dtype=np.float64).reshape(-1))
    if beats.size < 2:  # nothing to fit: 120 bpm from the first beat (or frame 0)
        period = fps * 0.5
        phase = float(beats[0] % period) if beats.size else 0.0
        grid = np.arange(phase, n_frames, period)
        return BeatGrid(period, phase, grid, 0.0)
    best = (-1.0, 0.0, 0.0)
    for period in np.arange(MIN_PERIOD_S * fps, MAX_PERIOD_S * fps, 0.25):
        angle = 2 * np.pi * beats / period
        mean_angle = np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())  # circular mean phase
        phase = (mean_angle / (2 * np.pi) * period) % period
        grid = np.arange(phase, n_frames, period)
        score = _grid_score(beats, grid, tolerance=max(3.0, 0.15 * period))
        if score > best[0] + 1e-9:  # ties keep the shorter period (more beats for the GPT to follow)
            best = (score, period, phase)
    score, period, phase = best
    grid = np.arange(phase, n_frames, period)
    nearest = np.abs(beats[None, :] - grid[:, None]).argmin(axis=1)  # (K,)
    snap = np.abs(beats[nearest] - grid) <= 0.25 * period
    grid = np.where(snap, beats[nearest], grid)
    return BeatGrid(float(period), float(phase), np.unique(grid), float(score))


# --- synthesis ----------------------------------------------------------------------------------------
def _envelope(n: int, sr: int, decay_s: float) -> np.ndarray:
    t = np.arange(n) / sr
    attack = np.minimum(1.0, t / 0.002)  # 2 ms attack: no click, still a sharp onset
    return attack * np.exp(-t / decay_s)


def _kick(sr: int) -> np.ndarray:
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    freq = 45.0 + 95.0 * np.exp(-t / 0.04)  # pitch sweep 140 -> 45 Hz
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * _envelope(n, sr, 0.12)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    noise = rng.standard_normal(n)
    noise = noise - np.convolve(noise, np.ones(8) / 8, mode="same")  # crude high-pass
    return (0.6 * noise * _envelope(n, sr, 0.06) + 0.5 * np.sin(2 * np.pi * 185 * t) * _envelope(n, sr, 0.05))


def _hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.06 * sr)
    noise = rng.standard_normal(n)
    noise = np.diff(noise, prepend=0.0)  # brighter
    return noise * _envelope(n, sr, 0.012)


def _tone(freqs: list[float], seconds: float, sr: int, decay_s: float) -> np.ndarray:
    n = max(1, int(seconds * sr))
    t = np.arange(n) / sr
    wave = sum(np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t) for f in freqs)
    return wave * _envelope(n, sr, decay_s) / len(freqs)


def _add(track: np.ndarray, sound: np.ndarray, start_s: float, sr: int, gain: float) -> None:
    i = int(round(start_s * sr))
    if i >= track.size or i < 0:
        return
    n = min(sound.size, track.size - i)
    track[i : i + n] += gain * sound[:n]


# I-V-vi-IV in C: (bass root, chord tones) in Hz
_PROGRESSION = [
    (65.41, [261.63, 329.63, 392.00]),  # C
    (98.00, [246.94, 293.66, 392.00]),  # G
    (110.00, [261.63, 329.63, 440.00]),  # Am
    (87.31, [261.63, 349.23, 440.00]),  # F
]


def synthesise(beat_times_s: np.ndarray, duration_s: float, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A mono float32 track of ``duration_s`` with a drum-and-bass pattern whose beats are ``beat_times_s``."""
    rng = np.random.default_rng(seed)
    track = np.zeros(int(np.ceil(duration_s * sr)) + 1, dtype=np.float64)
    beats = np.sort(np.asarray(beat_times_s, dtype=np.float64))
    kick, snare, hat = _kick(sr), _snare(sr, rng), _hat(sr, rng)
    for k, t in enumerate(beats):
        nxt = beats[k + 1] if k + 1 < len(beats) else t + (beats[k] - beats[k - 1] if k else 0.5)
        gap = max(nxt - t, 0.1)
        bass_root, chord = _PROGRESSION[(k // 4) % len(_PROGRESSION)]
        _add(track, kick, t, sr, 1.0)
        _add(track, hat, t, sr, 0.5)  # broadband click: the onset detector's median over bands sees it
        if k % 2 == 1:
            _add(track, snare, t, sr, 0.5)
        _add(track, _tone([bass_root], gap, sr, 0.25 * gap + 0.05), t, sr, 0.35)
        if k % 4 == 0:  # one chord per bar, held over four beats
            _add(track, _tone(chord, 4 * gap, sr, 2.0 * gap), t, sr, 0.12)
    peak = np.abs(track).max()
    if peak > 0:
        track = 0.9 * track / peak
    return track.astype(np.float32)


# --- per clip, cached --------------------------------------------------------------------------------
def write_wav_atomic(path: Path, audio: np.ndarray, sr: int) -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        soundfile.write(tmp, audio, sr, subtype="PCM_16", format="WAV")
    return path


def accompaniment_key(joints: np.ndarray, fps: float) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(joints, dtype=np.float32).tobytes())
    digest.update(f"|{fps}|v{SYNTH_VERSION}|{SAMPLE_RATE}".encode())
    return digest.hexdigest()[:24]


def accompaniment_for_motion(joints: np.ndarray, cache_dir: str | Path, name: str = "clip",
                             fps: float = 60.0, beats: np.ndarray | None = None) -> tuple[Path, BeatGrid]:
    """The accompaniment WAV of a motion (T, 24, 3) at ``fps`` (made once, then read from ``cache_dir``).

    The track starts at the motion's frame 0 and lasts as long as the motion. Its beats are a steady
    beat fitted to the motion's, or ``beats`` (frames) where the caller knows them (a motion re-timed
    at a drifting rate: its captured beat carried through the time map, ``training.data.augment``).
    """
    joints = np.asarray(joints)
    if beats is None:
        grid = fit_beat_grid(motion_beats(joints), len(joints), fps)
        key = accompaniment_key(joints, fps)
    else:
        beats = np.sort(np.asarray(beats, dtype=np.float64).reshape(-1))
        period = float(np.median(np.diff(beats))) if beats.size > 1 else fps * 0.5
        grid = BeatGrid(period, float(beats[0] % period) if beats.size else 0.0, beats, float("nan"))
        key = hashlib.sha256(f"{accompaniment_key(joints, fps)}|{beats.round(3).tolist()}".encode()).hexdigest()[:24]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]
    path = Path(cache_dir) / f"{safe}-{key}.wav"
    if not path.is_file():
        audio = synthesise(grid.beats / fps, len(joints) / fps)
        write_wav_atomic(path, audio, SAMPLE_RATE)
    return path, grid
