"""More training motion from the same takes: mirror images, re-timed copies, and a held-out tail.

* ``mirror_clip``: the left/right mirror image (x negated, every l_* joint swapped with its r_*). A
  dance mirrored is still that dance; it doubles the poses the VQ-VAE and the GPT see.
* ``retime_clip``: the motion played ``rate`` times as fast (1.15: 15 % faster, fewer frames). The GPT
  then sees each move at several tempi; the accompaniment of a clip without music is synthesised on the
  re-timed motion's own beats (``engine.accompaniment``), so the drum hits move with the moves. A
  clip with a recorded song is not re-timed (its song would no longer fit).
* ``drift_clip``: the motion re-timed at a rate that swings smoothly between 1 / (1 + amount) and
  1 + amount with a period of ``period_s`` (a phase of its own per clip), so the beat's period changes
  *inside* a training window. Its accompaniment's beats are the steady beat fitted to the captured
  motion, carried through the same time map (``meta["accompaniment_beats"]``). Why: with steady tempi
  the GPT can place the next beat from its own codes alone, and it did (it reads the music for the
  take and tempo, hardly for the phase: ``benchmarks/measure_music_use.py``); here only the music
  tells it where the next beat falls.
* ``catch_up_clips``: the take cut into pieces of a few seconds, each starting *out of phase* with its
  accompaniment (the motion late or early by up to ``max_offset_s``) and catching up with it within
  ``settle_s`` (played a little faster or slower meanwhile), then on the beat. A dance the GPT starts
  is at an arbitrary phase of the song's beat; in the captured takes motion and music are always in
  phase, so no window ever showed the GPT what to do about a phase error (``tempo_drift`` did not
  change how much it reads the phase: ``assets/MODEL_CARD.md``). These windows do.
* ``hold_out_tail``: a style with a single take (CMU subject 94) would otherwise be all training or all
  held out; its last ``share`` becomes a take of its own, prescribed to the validation side.

Augmented copies are made of the *training* side only, after the split (``sources.load_windows``):
no copy of a held-out take ever reaches a stage.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np

from engine.clock import MOTION_FPS
from engine.postprocess import sample_frames, smoothstep
from engine.skeleton import mirror_joints
from training.errors import DataError

from .clip import MotionClip, resample_positions

MIN_TAIL_S = 5.0  # a held-out tail must hold at least one 4-s training window


def _has_song(clip: MotionClip) -> bool:
    return clip.music_path is not None or clip.music_features is not None


def mirror_clip(clip: MotionClip) -> MotionClip:
    """The clip's left/right mirror image (x -> -x, l_* <-> r_*), named ``<name>~mirror``."""
    return dataclasses.replace(clip, joints=mirror_joints(clip.joints), name=f"{clip.name}~mirror",
                               meta={**clip.meta, "mirrored": True})


def retime_clip(clip: MotionClip, rate: float) -> MotionClip:
    """The clip played ``rate`` times as fast (linear resampling at 60 fps), named ``<name>@x<rate>``."""
    if not (np.isfinite(rate) and 0.25 <= rate <= 4.0):
        raise DataError(f"a tempo rate must be within 0.25..4, got {rate}")
    if _has_song(clip):
        raise DataError(f"clip {clip.name!r} has a recorded song: re-timing it would break the pairing")
    joints = resample_positions(clip.joints, clip.fps * rate, MOTION_FPS).astype(np.float32)
    return dataclasses.replace(clip, joints=joints, name=f"{clip.name}@x{rate:g}",
                               meta={**clip.meta, "tempo_rate": rate * clip.meta.get("tempo_rate", 1.0)})


def drift_rate(n_frames: int, amount: float, period_s: float, phase: float, fps: float = MOTION_FPS) -> np.ndarray:
    """The playback rate at each output frame (n,): exp(log(1 + amount) * sin(2 pi t / period + phase))."""
    t = np.arange(n_frames) / fps
    return np.exp(np.log1p(amount) * np.sin(2 * np.pi * t / period_s + phase))


def drift_clip(clip: MotionClip, amount: float, period_s: float = 8.0) -> MotionClip:
    """The clip played at a smoothly drifting rate (``drift_rate``; its phase from the clip's name), named
    ``<name>@drift<amount>``, with the beats of its accompaniment in ``meta["accompaniment_beats"]``
    (60 fps frames of the new timing)."""
    from engine.accompaniment import fit_beat_grid
    from engine.beats import motion_beats

    if not (np.isfinite(amount) and 0.0 < amount <= 1.0):
        raise DataError(f"a tempo drift must be within (0, 1], got {amount}")
    if not (np.isfinite(period_s) and period_s >= 1.0):
        raise DataError(f"a tempo drift's period must be at least 1 s, got {period_s}")
    if _has_song(clip):
        raise DataError(f"clip {clip.name!r} has a recorded song: re-timing it would break the pairing")
    fps = clip.fps
    last = clip.num_frames - 1
    phase = (zlib.crc32(clip.name.encode()) % 3600) / 3600 * 2 * np.pi  # fixed per clip, not per run
    # output frame k shows the source frame s_k = the sum of the rates of the frames before k
    longest = int(np.ceil(last * (1 + amount))) + 2  # the slowest playback's length
    rate = drift_rate(longest, amount, period_s, phase, fps)
    s = np.concatenate([[0.0], np.cumsum(rate[:-1])])
    n = int(np.searchsorted(s, last, side="right"))  # frames whose source frame is inside the take
    s = s[:n]
    joints = sample_frames(clip.joints, s).astype(np.float32)
    # the accompaniment: the captured motion's steady beat, through the same time map
    grid = fit_beat_grid(motion_beats(clip.joints), clip.num_frames, fps).beats
    beats = np.interp(grid, s, np.arange(n)) if n > 1 else np.zeros(0)
    beats = beats[(grid >= s[0]) & (grid <= s[-1])]
    return dataclasses.replace(clip, joints=joints, name=f"{clip.name}@drift{amount:g}",
                               meta={**clip.meta, "tempo_drift": [amount, period_s, phase],
                                     "accompaniment_beats": beats})


def catch_up_clips(clip: MotionClip, copy: int = 0, piece_s: float = 6.0, max_offset_s: float = 0.3,
                   settle_s: float = 1.5) -> list[MotionClip]:
    """The clip cut into ``piece_s`` pieces (named ``<name>@catch<copy>.<i>``), each with its motion
    ``offset`` seconds behind (> 0) or ahead of (< 0) its accompaniment at its first frame, the offset
    shrinking smoothly to zero over ``settle_s`` (``meta["catch_up"] = [offset, settle_s]``). The
    accompaniment's beats (``meta["accompaniment_beats"]``) are the captured motion's steady beat at
    the piece's own times; each piece's offset is drawn from its name and ``copy``."""
    from engine.accompaniment import fit_beat_grid
    from engine.beats import motion_beats

    if not (0.0 < max_offset_s < settle_s < piece_s):
        raise DataError(f"a catch-up needs 0 < max_offset_s < settle_s < piece_s, got {max_offset_s}, "
                        f"{settle_s}, {piece_s}")
    if _has_song(clip):
        raise DataError(f"clip {clip.name!r} has a recorded song: its timing must stay as captured")
    fps = clip.fps
    grid = fit_beat_grid(motion_beats(clip.joints), clip.num_frames, fps).beats  # frames of the take
    n = int(round(piece_s * fps))
    frames = np.arange(n)
    margin = int(np.ceil(max_offset_s * fps))  # room for a late start
    pieces = []
    for i, start in enumerate(range(margin, clip.num_frames - n - margin + 1, n)):
        rng = np.random.default_rng(zlib.crc32(f"{clip.name}|{copy}|{i}".encode()))
        offset = float(rng.uniform(-max_offset_s, max_offset_s))
        # frames the motion is behind its music: from the offset down to none over settle_s
        lag = offset * fps * (1.0 - smoothstep(np.clip(frames / (settle_s * fps), 0.0, 1.0)))
        joints = sample_frames(clip.joints, start + frames - lag)  # the take's frames shown by the piece
        beats = grid[(grid >= start) & (grid < start + n)] - start
        pieces.append(dataclasses.replace(
            clip, joints=joints.astype(np.float32),
            name=f"{clip.name}@catch{copy}.{i}",
            meta={**clip.meta, "catch_up": [offset, settle_s], "frames": [start, start + n],
                  "accompaniment_beats": beats}))
    return pieces


def augment_clips(clips: Sequence[MotionClip], mirror: bool = False, tempo_rates: Sequence[float] = (),
                  tempo_drift: float = 0.0, tempo_drift_period_s: float = 8.0,
                  catch_up: int = 0) -> list[MotionClip]:
    """The clips, then their re-timed copies (clips with a song are left at rate 1), then their drifting
    copies (``tempo_drift`` > 0), then ``catch_up`` sets of catch-up pieces, then the mirror images of
    all of those. The originals come first and unchanged."""
    out = list(clips)
    for rate in tempo_rates:
        if rate != 1.0:
            out += [retime_clip(c, rate) for c in clips if not _has_song(c)]
    if tempo_drift > 0.0:
        out += [drift_clip(c, tempo_drift, tempo_drift_period_s) for c in clips if not _has_song(c)]
    for copy in range(catch_up):
        out += [piece for c in clips if not _has_song(c) for piece in catch_up_clips(c, copy)]
    if mirror:
        out += [mirror_clip(c) for c in out]
    return out


def hold_out_tail(clips: Sequence[MotionClip], share: float) -> list[MotionClip]:
    """For every style that has a single take of a single clip, cut that clip's last ``share`` into a
    take of its own that the split must put on the validation side (``split="val"``)."""
    if not 0.0 <= share < 1.0:
        raise DataError(f"the held-out share of a single-take style must be in [0, 1), got {share}")
    if share == 0.0:
        return list(clips)
    takes: dict[str, set[str]] = {}
    for c in clips:
        if c.style is not None:
            takes.setdefault(c.style, set()).add(c.take_id)
    out: list[MotionClip] = []
    for c in clips:
        single = c.style is not None and len(takes[c.style]) == 1 and c.split is None
        cut = c.num_frames - int(round(share * c.num_frames))
        if not single or sum(x.take_id == c.take_id for x in clips) != 1 or (c.num_frames - cut) < MIN_TAIL_S * c.fps:
            out.append(c)
            continue
        out.append(dataclasses.replace(c, joints=c.joints[:cut], name=f"{c.name}_head",
                                       take_id=f"{c.take_id}_head", meta={**c.meta, "frames": [0, cut]}))
        out.append(dataclasses.replace(c, joints=c.joints[cut:], name=f"{c.name}_tail", split="val",
                                       take_id=f"{c.take_id}_tail",
                                       meta={**c.meta, "frames": [cut, c.num_frames]}))
    return out
