"""Fixed-length training windows over clips, and a train/validation split that keeps takes apart.

The training stages crop 240-frame windows (4 s at 60 fps) with a stride (40 for VQ-VAE step 1, 8 for
step 2 and the GPT). ``MotionWindows`` indexes every window start once and slices on demand, so a large
stride-8 set costs an index array, not copies of the motion.

The split works on *takes*, never on clips or windows: windows of one performance on both sides would
let validation measure memorisation. A source-prescribed split (AIST++: train / test) is honoured;
the other takes go to validation in the order of a seeded hash of their id (deterministic, and
independent of file order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.errors import DataError

from .clip import MotionClip

_VALIDATION_SPLITS = {"val", "test", "validation"}


@dataclass
class Split:
    """Clips on each side of a split; no ``take_id`` appears on both sides."""

    train: list[MotionClip]
    val: list[MotionClip]

    @property
    def train_takes(self) -> set[str]:
        return {c.take_id for c in self.train}

    @property
    def val_takes(self) -> set[str]:
        return {c.take_id for c in self.val}


def _take_rank(take_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}|{take_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_take(clips: Sequence[MotionClip], val_fraction: float = 0.1, seed: int = 0,
                  by_style: bool = False) -> Split:
    """Split ``clips`` so that whole takes go to one side; about ``val_fraction`` of the free frames go to val.

    Clips whose source prescribes a split keep it (``train`` -> train; ``val``/``test`` -> val), and a
    take with any prescribed-validation clip goes to val entirely. The remaining takes are ordered by a
    seeded hash and taken into validation until it holds ``val_fraction`` of their frames, but never all
    of them (at least one take stays in train) and at least one when ``val_fraction > 0`` and there are
    two or more free takes. With ``by_style`` this is done within each style (``clip.style``; unknown
    styles form one group), so every style with two or more free takes keeps some held out.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    frames: dict[str, int] = {}
    forced: dict[str, str] = {}
    for c in clips:
        frames[c.take_id] = frames.get(c.take_id, 0) + c.num_frames
        if c.split is not None:
            side = "val" if c.split in _VALIDATION_SPLITS else "train"
            if forced.get(c.take_id) != "val":
                forced[c.take_id] = side
    group = {c.take_id: (c.style if by_style else None) for c in clips}
    val_takes = {t for t, side in forced.items() if side == "val"}
    for name in sorted(set(group.values()), key=str):
        free = sorted((t for t in frames if t not in forced and group[t] == name),
                      key=lambda t: _take_rank(t, seed))
        val_takes |= _validation_takes(free, frames, val_fraction)
    return Split(
        train=[c for c in clips if c.take_id not in val_takes],
        val=[c for c in clips if c.take_id in val_takes],
    )


def _validation_takes(free: list[str], frames: dict[str, int], val_fraction: float) -> set[str]:
    """The first of the ``free`` takes (in hash order) that fill about ``val_fraction`` of their frames."""
    budget = val_fraction * sum(frames[t] for t in free)
    taken, chosen = 0, set()
    for i, take in enumerate(free):
        if len(free) - i <= 1 or val_fraction == 0.0:
            break  # keep at least one free take for training
        if taken > 0 and taken + frames[take] / 2 > budget:
            break  # stop nearest to the budget
        chosen.add(take)
        taken += frames[take]
    return chosen


class MotionWindows:
    """Every ``length``-frame window, ``stride`` apart, over a list of clips (a map-style dataset).

    ``ds[i]`` -> {'joints': (length, 24, 3) float32, 'music': (length, 438) float32 when every clip has
    60 fps music features, 'clip': index into ``clips``, 'start': first frame}. Clips shorter than
    ``length`` contribute nothing (listed in ``skipped``).
    """

    def __init__(self, clips: Sequence[MotionClip], length: int = 240, stride: int = 40) -> None:
        if length < 1 or stride < 1:
            raise DataError(f"window length and stride must be >= 1, got {length} and {stride}")
        self.clips = list(clips)
        self.length = int(length)
        self.stride = int(stride)
        index = []
        self.skipped: list[str] = []
        for ci, clip in enumerate(self.clips):
            starts = np.arange(0, clip.num_frames - self.length + 1, self.stride)
            if starts.size == 0:
                self.skipped.append(clip.name)
            index.append(np.stack([np.full_like(starts, ci), starts], axis=1))
        self.index = np.concatenate(index, axis=0) if index else np.zeros((0, 2), dtype=np.int64)  # (N, 2)
        self.with_music = bool(self.clips) and all(
            c.music_features is not None and c.music_fps == c.fps for c in self.clips
        )

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int) -> dict[str, np.ndarray | int]:
        ci, start = (int(v) for v in self.index[i])
        clip = self.clips[ci]
        item: dict[str, np.ndarray | int] = {
            "joints": clip.joints[start : start + self.length],
            "clip": ci,
            "start": start,
        }
        if self.with_music:
            music = clip.music_features[start : start + self.length]  # type: ignore[index]
            if music.shape[0] < self.length:  # the song may end before the motion: repeat its last frame
                pad = np.repeat(music[-1:], self.length - music.shape[0], axis=0)
                music = np.concatenate([music, pad], axis=0)
            item["music"] = music
        return item

    def joints_array(self) -> np.ndarray:
        """All windows at once: (N, length, 24, 3) float32 (a copy; for small sets and tests)."""
        out = np.empty((len(self), self.length, 24, 3), dtype=np.float32)
        for i in range(len(self)):
            out[i] = self[i]["joints"]
        return out

    def take_ids(self) -> list[str]:
        """Take id of every window, in index order."""
        return [self.clips[int(ci)].take_id for ci in self.index[:, 0]]

    def styles(self) -> list[str | None]:
        """Style of every window (its clip's, None when unknown), in index order."""
        return [self.clips[int(ci)].style for ci in self.index[:, 0]]
