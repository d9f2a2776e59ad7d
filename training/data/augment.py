"""More training motion from the same takes: mirror images, re-timed copies, and a held-out tail.

* ``mirror_clip``: the left/right mirror image (x negated, every l_* joint swapped with its r_*). A
  dance mirrored is still that dance; it doubles the poses the VQ-VAE and the GPT see.
* ``retime_clip``: the motion played ``rate`` times as fast (1.15: 15 % faster, fewer frames). The GPT
  then sees each move at several tempi; the accompaniment of a clip without music is synthesised on the
  re-timed motion's own beats (``engine.accompaniment``), so the drum hits move with the moves. A
  clip with a recorded song is not re-timed (its song would no longer fit).
* ``hold_out_tail``: a style with a single take (CMU subject 94) would otherwise be all training or all
  held out; its last ``share`` becomes a take of its own, prescribed to the validation side.

Augmented copies are made of the *training* side only, after the split (``sources.load_windows``):
no copy of a held-out take ever reaches a stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from engine.clock import MOTION_FPS
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


def augment_clips(clips: Sequence[MotionClip], mirror: bool = False,
                  tempo_rates: Sequence[float] = ()) -> list[MotionClip]:
    """The clips, then their re-timed copies (clips with a song are left at rate 1), then the mirror
    images of all of those. The originals come first and unchanged."""
    out = list(clips)
    for rate in tempo_rates:
        if rate != 1.0:
            out += [retime_clip(c, rate) for c in clips if not _has_song(c)]
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
