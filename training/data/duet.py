"""Duets: a leader and a follower captured together (the CMU salsa of subjects 60 and 61), as pairs.

Each dancer goes through the solo BVH path (``bvh_mocap``: SMPL-24 at 60 fps, y-up, metres), but all
that places the two in one world is done once for the pair, so the distance between them, their
facing and their timing stay as captured:

* one scale for the capture's world (the mean of the two dancers' leg-length scales; the bodies take
  SMPL's bone lengths as in the solo path);
* one trim: the frames where both dancers' capture has settled, after the walk-in (the couple walks up
  from about 2 m apart and starts dancing at their usual 0.6-0.8 m; ``walk_in_frames``);
* one floor: the pair's own (the mean of the two floor heights, both recorded);
* equal frame counts and equal true frame rates checked: a pair that does not line up is refused.

``split_duets`` keeps held-out pairs away from training (both dancers of a take always together), and
``mirror_duet`` / ``rotate_duet`` make more couples from the training pairs.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.clock import MOTION_FPS
from engine.skeleton import NUM_JOINTS, mirror_joints
from training.errors import DataError, DataFormatError

from .bvh_mocap import read_capture, repair_glitches, retarget_scale, retarget_to_smpl, trim_settling_frames
from .clip import floor_height

LEADER_SUBJECT, FOLLOWER_SUBJECT = "60", "61"
# The couple is dancing once their pelvises come within this factor of their usual (median) distance.
WALK_IN_FACTOR = 1.5
# ... and the walk-in is never longer than this (a take that never closes in is refused).
MAX_WALK_IN_S = 12.0


@dataclass(eq=False)  # compared by identity, as MotionClip
class DuetClip:
    """One take of a couple, both dancers in one world frame.

    leader, follower: (T, 24, 3) float32 SMPL joint positions, 60 fps, y-up, metres, same T.
    name:             the take (``cmu_salsa_01``); mirrored/rotated copies add a suffix.
    take_id:          the performance: a take's copies share it, so a split keeps them together.
    meta:             where it came from and what was done (paths, scale, trims, floors, repairs).
    """

    leader: np.ndarray
    follower: np.ndarray
    name: str
    take_id: str
    fps: float = MOTION_FPS
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for role, joints in (("leader", self.leader), ("follower", self.follower)):
            j = np.asarray(joints)
            if j.ndim != 3 or j.shape[1:] != (NUM_JOINTS, 3):
                raise DataFormatError(f"duet {self.name!r}: the {role}'s joints must be (T, 24, 3), got {j.shape}")
        if self.leader.shape != self.follower.shape:
            raise DataFormatError(f"duet {self.name!r}: the leader has {len(self.leader)} frames and the "
                                  f"follower {len(self.follower)}; a pair must have one frame count")

    @property
    def num_frames(self) -> int:
        return int(self.leader.shape[0])


def pair_paths(folder: str | Path) -> list[tuple[Path, Path]]:
    """(leader, follower) BVH paths of every take in ``folder``: ``60_XX.bvh`` with ``61_XX.bvh``.
    A take with only one of the two dancers is refused (a solo take is not a duet)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"duet folder not found: {folder}")
    takes: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.glob("*.bvh")):
        m = re.fullmatch(r"(\d+)_(\d+)", path.stem)
        if m and m[1] in (LEADER_SUBJECT, FOLLOWER_SUBJECT):
            takes.setdefault(m[2], {})[m[1]] = path
    pairs = []
    for take, dancers in sorted(takes.items()):
        if set(dancers) != {LEADER_SUBJECT, FOLLOWER_SUBJECT}:
            missing = ({LEADER_SUBJECT, FOLLOWER_SUBJECT} - set(dancers)).pop()
            raise DataError(f"take {take} in {folder} has no {missing}_{take}.bvh: a duet needs both dancers")
        pairs.append((dancers[LEADER_SUBJECT], dancers[FOLLOWER_SUBJECT]))
    if not pairs:
        raise DataError(f"no duet takes (60_XX.bvh with 61_XX.bvh) in {folder}")
    return pairs


def walk_in_frames(leader: np.ndarray, follower: np.ndarray, fps: float = MOTION_FPS) -> int:
    """Frames before the couple starts dancing: until their pelvises (on the floor plane) first come
    within ``WALK_IN_FACTOR`` x their median distance over the take. Raises ``DataError`` when that
    takes longer than ``MAX_WALK_IN_S``."""
    distance = np.linalg.norm((leader[:, 0] - follower[:, 0])[:, [0, 2]], axis=1)  # (T,)
    close = np.flatnonzero(distance <= WALK_IN_FACTOR * float(np.median(distance)))
    if not close.size or close[0] > MAX_WALK_IN_S * fps:
        raise DataError(f"the dancers never come together within the first {MAX_WALK_IN_S:g} s "
                        f"(median distance {np.median(distance):.2f} m): not a couple dancing")
    return int(close[0])


def load_duet(leader_path: str | Path, follower_path: str | Path, *, name: str | None = None) -> DuetClip:
    """One take's two BVH files -> a ``DuetClip`` (see the module docstring for what is shared)."""
    leader_path, follower_path = Path(leader_path), Path(follower_path)
    for path in (leader_path, follower_path):
        if not path.is_file():
            raise DataError(f"BVH file not found: {path}")
    (pts_l, rest_l, rig_l, fps_l), (pts_f, rest_f, rig_f, fps_f) = read_capture(leader_path), read_capture(follower_path)
    if fps_l != fps_f:
        raise DataFormatError(f"{leader_path.name} is {fps_l:g} fps and {follower_path.name} {fps_f:g} fps: "
                              "the two dancers of a take were captured together, at one rate")
    frames = (len(next(iter(pts_l.values()))), len(next(iter(pts_f.values()))))
    if frames[0] != frames[1]:
        raise DataFormatError(f"{leader_path.name} has {frames[0]} frames and {follower_path.name} {frames[1]}: "
                              "the two dancers of a take must line up frame for frame")
    scale = (retarget_scale(rest_l, rig_l) + retarget_scale(rest_f, rig_f)) / 2.0
    leader, _ = retarget_to_smpl(pts_l, rest_l, rig_l, scale=scale)
    follower, _ = retarget_to_smpl(pts_f, rest_f, rig_f, scale=scale)
    # One trim: both settled, and the walk-in cut.
    (start_l, stop_l), (start_f, stop_f) = trim_settling_frames(leader), trim_settling_frames(follower)
    start, stop = max(start_l, start_f), min(stop_l, stop_f)
    walk_in = walk_in_frames(leader[start:stop], follower[start:stop])
    start += walk_in
    leader, repaired_l = repair_glitches(leader[start:stop])
    follower, repaired_f = repair_glitches(follower[start:stop])
    # One floor for both.
    floors = (floor_height(leader), floor_height(follower))
    floor = float(np.mean(floors))
    leader[..., 1] -= floor
    follower[..., 1] -= floor
    take = re.fullmatch(r"\d+_(\d+)", leader_path.stem)
    take_name = f"cmu_salsa_{take[1]}" if take else leader_path.stem
    return DuetClip(
        leader=leader.astype(np.float32), follower=follower.astype(np.float32), name=name or take_name,
        take_id=take_name,
        meta={"leader_path": str(leader_path), "follower_path": str(follower_path), "src_fps": fps_l,
              "scale": scale, "trimmed": [start, frames[0] - stop], "walk_in_frames": walk_in,
              "floor_heights": [floors[0] - floor, floors[1] - floor],
              "repaired_frames": [int(repaired_l), int(repaired_f)]},
    )


def load_duets(folder: str | Path) -> list[DuetClip]:
    """Every take of ``folder`` (see ``pair_paths``), in take order."""
    return [load_duet(leader, follower) for leader, follower in pair_paths(folder)]


def split_duets(duets: Sequence[DuetClip], held_out: Iterable[str]) -> tuple[list[DuetClip], list[DuetClip]]:
    """(training pairs, held-out pairs): a pair is held out when its ``take_id`` is in ``held_out`` (the
    takes the solo model held out of every stage, so that no stage has seen a held-out couple)."""
    held = set(held_out)
    unknown = held - {d.take_id for d in duets}
    if unknown:
        raise DataError(f"held-out takes not among the duets: {', '.join(sorted(unknown))}")
    return [d for d in duets if d.take_id not in held], [d for d in duets if d.take_id in held]


def mirror_duet(duet: DuetClip) -> DuetClip:
    """The couple's left/right mirror image (x -> -x, l_* <-> r_* for both), named ``<name>~mirror``.
    The leader stays the leader."""
    return dataclasses.replace(duet, leader=mirror_joints(duet.leader), follower=mirror_joints(duet.follower),
                               name=f"{duet.name}~mirror", meta={**duet.meta, "mirrored": True})


def rotate_duet(duet: DuetClip, degrees: float) -> DuetClip:
    """The couple turned by ``degrees`` about the vertical axis through the origin (both dancers
    together: their distance, facing and contacts unchanged), named ``<name>~rot<degrees>``."""
    a = math.radians(degrees)
    turn = np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]],
                    dtype=np.float32)  # about +y (up)
    return dataclasses.replace(duet, leader=duet.leader @ turn.T, follower=duet.follower @ turn.T,
                               name=f"{duet.name}~rot{degrees:g}", meta={**duet.meta, "rotated_deg": degrees})
