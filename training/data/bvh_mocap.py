"""BVH motion capture (CMU rigs) retargeted onto the SMPL-24 male skeleton, 60 fps, y-up, metres.

The capture's world joint positions (``engine.bvh.read_bvh(...).world_positions()``) are resampled to
60 fps, then an SMPL pose is built from the root down with the SMPL male rest bone lengths, so every
frame has exactly the skeleton the models are trained on:

* **Pelvis and thorax** are rigid segments. Their world rotation is the best-fit (Kabsch) rotation
  taking a few landmarks that move with the segment from the capture's rest pose (all BVH rotations
  zero: upright, facing +z, like SMPL's rest) to the current frame. SMPL's hips and spine1 hang off the
  pelvis, neck and collars off the thorax, at their rest offsets rotated by that rotation.
* **spine2 / spine3** do not exist in the capture: their rotations are slerped between the pelvis and
  thorax rotations at 1/3 and 2/3, i.e. the bend is spread evenly along the SMPL spine.
* **SMPL pelvis position**: SMPL's hip-joint midpoint is put on the capture's hip-joint midpoint (scaled);
  the SMPL pelvis lies 8 cm above it (the rigid pelvis offset), which the capture's root need not.
* **Limbs** (thigh, shin, foot, upper arm, forearm, hand) keep the capture's bone *direction*: the
  anatomical direction of a limb segment does not depend on the rig's rest pose (the CMU-131 rest has
  the arms down, SMPL's is a T-pose). Shoulders (collar -> shoulder) and the head are *rest-calibrated*:
  the capture direction is expressed in the thorax frame and turned by the constant rotation between
  the two rigs' rest directions, because there the joints sit differently (SMPL's head joint is 29°
  forward of the neck's axis; CMU's is straight above).
* **Capture glitches**: the opening solver frames of a take are trimmed, and short spans where a limb
  jumps (a leg or forearm solved into a wrong pose for a few frames, seen in several leader takes) are
  replaced by slerping that limb's bone directions across them (``repair_glitches``).
* **Root trajectory** is scaled by SMPL leg length / capture leg length, so steps keep their size
  relative to the body; then the feet are put on the floor (y = 0 at contact). World heading is kept.

Units: the CMU files here state metres; the leg-ratio scaling makes the result independent of that (the
capture's standing height from its rest offsets is kept in ``meta['capture_height']`` as a check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.clock import MOTION_FPS
from engine.rotation import best_rotation, rotation_between, slerp_matrices
from engine.skeleton import LEGS, NUM_JOINTS, REST_JOINTS, bone_directions
from training.errors import DataError, DataFormatError

from .bones import REST_BONE_LENGTHS
from .cache import cached_arrays
from .clip import MotionClip, files_in, ground_to_floor, resample_positions


@dataclass(frozen=True)
class RigMap:
    """How one capture rig's joints stand in for the SMPL joints (capture names; ``X_end`` = X's end site)."""

    name: str
    pelvis_landmarks: tuple[str, ...]  # points rigid with the pelvis (>= 3, not collinear)
    thorax_landmarks: tuple[str, ...]  # points (nearly) rigid with the upper thorax
    hips: tuple[str, str]  # left, right hip-joint centres (thigh heads)
    knees: tuple[str, str]
    ankles: tuple[str, str]
    # SMPL joint -> (capture point a, capture point b): the bone parent(j) -> j points along b - a.
    directions: dict[int, tuple[str, str]] = field(default_factory=dict)
    # SMPL joints whose direction is rest-calibrated in the thorax frame (see the module docstring).
    calibrated: tuple[int, ...] = (15, 16, 17)


# CMU "hip/abdomen/chest" rig of the salsa takes (subjects 60/61): 43 joints + end sites.
CMU_POSER = RigMap(
    name="cmu_poser_43",
    pelvis_landmarks=("hip", "abdomen", "lButtock", "rButtock"),
    thorax_landmarks=("chest", "neck", "lCollar", "rCollar"),
    hips=("lThigh", "rThigh"),
    knees=("lShin", "rShin"),
    ankles=("lFoot", "rFoot"),
    directions={
        4: ("lThigh", "lShin"), 5: ("rThigh", "rShin"),
        7: ("lShin", "lFoot"), 8: ("rShin", "rFoot"),
        10: ("lFoot", "lFoot_end"), 11: ("rFoot", "rFoot_end"),
        15: ("neck", "head"),
        16: ("lCollar", "lShldr"), 17: ("rCollar", "rShldr"),
        18: ("lShldr", "lForeArm"), 19: ("rShldr", "rForeArm"),
        20: ("lForeArm", "lHand"), 21: ("rForeArm", "rHand"),
        22: ("lHand", "lMid1"), 23: ("rHand", "rMid1"),
    },
)

# CMU ASF-derived 31-joint rig (subject 131 and most of the CMU database).
CMU_ASF = RigMap(
    name="cmu_asf_31",
    pelvis_landmarks=("Hips", "LeftHip", "RightHip"),
    thorax_landmarks=("Chest2", "Neck", "LeftShoulder", "RightShoulder"),
    hips=("LeftHip", "RightHip"),
    knees=("LeftKnee", "RightKnee"),
    ankles=("LeftAnkle", "RightAnkle"),
    directions={
        4: ("LeftHip", "LeftKnee"), 5: ("RightHip", "RightKnee"),
        7: ("LeftKnee", "LeftAnkle"), 8: ("RightKnee", "RightAnkle"),
        10: ("LeftAnkle", "LeftToe"), 11: ("RightAnkle", "RightToe"),
        15: ("Neck", "Head"),
        16: ("LeftCollar", "LeftShoulder"), 17: ("RightCollar", "RightShoulder"),
        18: ("LeftShoulder", "LeftElbow"), 19: ("RightShoulder", "RightElbow"),
        20: ("LeftElbow", "LeftWrist"), 21: ("RightElbow", "RightWrist"),
        22: ("LeftWrist", "LFingers"), 23: ("RightWrist", "RFingers"),
    },
)

# Reallusion "CC_Base" rig (CMU subject 5 converted onto iClone's dummy: 141 joints, centimetres, frame 0
# an added T-pose). Its twist and finger bones are ignored.
CC_BASE = RigMap(
    name="cc_base_141",
    pelvis_landmarks=("CC_Base_Pelvis", "CC_Base_L_Thigh", "CC_Base_R_Thigh", "CC_Base_Waist"),
    thorax_landmarks=("CC_Base_Spine02", "CC_Base_NeckTwist01", "CC_Base_L_Clavicle", "CC_Base_R_Clavicle"),
    hips=("CC_Base_L_Thigh", "CC_Base_R_Thigh"),
    knees=("CC_Base_L_Calf", "CC_Base_R_Calf"),
    ankles=("CC_Base_L_Foot", "CC_Base_R_Foot"),
    directions={
        4: ("CC_Base_L_Thigh", "CC_Base_L_Calf"), 5: ("CC_Base_R_Thigh", "CC_Base_R_Calf"),
        7: ("CC_Base_L_Calf", "CC_Base_L_Foot"), 8: ("CC_Base_R_Calf", "CC_Base_R_Foot"),
        10: ("CC_Base_L_Foot", "CC_Base_L_ToeBase"), 11: ("CC_Base_R_Foot", "CC_Base_R_ToeBase"),
        15: ("CC_Base_NeckTwist01", "CC_Base_Head"),
        16: ("CC_Base_L_Clavicle", "CC_Base_L_Upperarm"), 17: ("CC_Base_R_Clavicle", "CC_Base_R_Upperarm"),
        18: ("CC_Base_L_Upperarm", "CC_Base_L_Forearm"), 19: ("CC_Base_R_Upperarm", "CC_Base_R_Forearm"),
        20: ("CC_Base_L_Forearm", "CC_Base_L_Hand"), 21: ("CC_Base_R_Forearm", "CC_Base_R_Hand"),
        22: ("CC_Base_L_Hand", "CC_Base_L_Mid1"), 23: ("CC_Base_R_Hand", "CC_Base_R_Mid1"),
    },
)

RIGS: tuple[RigMap, ...] = (CMU_POSER, CMU_ASF, CC_BASE)
# Rigs whose converter put an added T-pose at frame 0 (not motion: dropped before anything else).
TPOSE_FIRST_FRAME = ("cc_base_141",)
CMU_TRIALS_CSV = "cmu_trials.csv"  # CMU's listing of every trial (subject, trial, description, fps)

# SMPL joints placed rigidly from a segment (the rest are direction bones or interpolated spine).
_PELVIS_CHILDREN = (1, 2, 3)
_THORAX_CHILDREN = (12, 13, 14)


def _required_points(rig: RigMap) -> set[str]:
    pts = set(rig.pelvis_landmarks) | set(rig.thorax_landmarks) | set(rig.hips) | set(rig.knees)
    pts |= set(rig.ankles)
    for a, b in rig.directions.values():
        pts |= {a, b}
    return pts


def detect_rig(names: list[str] | tuple[str, ...]) -> RigMap:
    """The ``RigMap`` whose joints are all present in ``names`` (capture joint and ``X_end`` names)."""
    have = set(names)
    for rig in RIGS:
        if _required_points(rig) <= have:
            return rig
    raise DataFormatError(
        "unknown BVH rig: supported are the CMU 43-joint 'hip/abdomen/chest' rig and the CMU 31-joint "
        f"'Hips/LeftHip/LeftKnee' rig (joints found: {', '.join(sorted(have)[:12])}...)"
    )


def _fit_landmarks(rest: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) best turning the rest landmarks (K, 3) onto the posed ones (T, K, 3), each
    set about its own centroid."""
    return best_rotation(rest - rest.mean(axis=0), posed - posed.mean(axis=1, keepdims=True))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def smpl_leg_length() -> float:
    """Hip -> knee -> ankle length of the SMPL male rest skeleton, averaged over both legs (m)."""
    # A bone is indexed by its child joint: thigh = knee's bone, shin = ankle's bone.
    return float(sum(REST_BONE_LENGTHS[knee] + REST_BONE_LENGTHS[ankle] for _, knee, ankle in LEGS) / 2)


def retarget_scale(rest: dict[str, np.ndarray], rig: RigMap) -> float:
    """The factor that gives the capture's legs (rest pose) SMPL's leg length: capture units -> metres
    of an SMPL-sized dancer."""
    def rest_len(a: str, b: str) -> float:
        return float(np.linalg.norm(rest[b] - rest[a]))

    leg = sum(rest_len(h, k) + rest_len(k, a) for h, k, a in zip(rig.hips, rig.knees, rig.ankles)) / 2
    if leg <= 0:
        raise DataFormatError(f"{rig.name}: the capture's legs have zero length in the rest pose")
    return smpl_leg_length() / leg


def retarget_to_smpl(
    points: dict[str, np.ndarray], rest: dict[str, np.ndarray], rig: RigMap, *, scale: float | None = None
) -> tuple[np.ndarray, float]:
    """Capture points {name: (T, 3)} + their rest positions {name: (3,)} -> (SMPL joints (T, 24, 3), scale).

    Output is not grounded; ``scale`` is the factor applied to the capture's root trajectory: the
    dancer's own (``retarget_scale``) unless given (a duet shares one for its whole world).
    """
    J = REST_JOINTS
    scale = retarget_scale(rest, rig) if scale is None else float(scale)
    n = next(iter(points.values())).shape[0]

    def stack(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([rest[k] for k in names]), np.stack([points[k] for k in names], axis=1)

    g_pelvis = _fit_landmarks(*stack(rig.pelvis_landmarks))  # (T, 3, 3)
    g_thorax = _fit_landmarks(*stack(rig.thorax_landmarks))
    g_spine1 = slerp_matrices(g_pelvis, g_thorax, 1.0 / 3.0)
    g_spine2 = slerp_matrices(g_pelvis, g_thorax, 2.0 / 3.0)

    joints = np.empty((n, NUM_JOINTS, 3))
    hip_mid = (points[rig.hips[0]] + points[rig.hips[1]]) / 2 * scale  # (T, 3)
    smpl_hip_mid_offset = (J[1] + J[2]) / 2 - J[0]
    joints[:, 0] = hip_mid - g_pelvis @ smpl_hip_mid_offset
    for j in _PELVIS_CHILDREN:
        joints[:, j] = joints[:, 0] + g_pelvis @ (J[j] - J[0])
    joints[:, 6] = joints[:, 3] + g_spine1 @ (J[6] - J[3])
    joints[:, 9] = joints[:, 6] + g_spine2 @ (J[9] - J[6])
    for j in _THORAX_CHILDREN:
        joints[:, j] = joints[:, 9] + g_thorax @ (J[j] - J[9])

    parents = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
    for j in sorted(rig.directions):  # SMPL order: every parent is placed before its children
        a, b = rig.directions[j]
        d = _unit(points[b] - points[a])  # (T, 3)
        if j in rig.calibrated:
            smpl_rest_dir = _unit(J[j] - J[parents[j]])
            cap_rest_dir = _unit(rest[b] - rest[a])
            fix = rotation_between(cap_rest_dir, smpl_rest_dir)
            local = np.einsum("tji,tj->ti", g_thorax, d)  # into the thorax frame
            d = np.einsum("tij,tj->ti", g_thorax, local @ fix.T)
        joints[:, j] = joints[:, parents[j]] + REST_BONE_LENGTHS[j] * d
    return joints, scale


# Bone groups checked and repaired as units: the limb chains, the head, the upper trunk (thorax rotation).
_GROUPS: tuple[tuple[int, ...], ...] = (
    (4, 7, 10), (5, 8, 11), (16, 18, 20, 22), (17, 19, 21, 23), (15,), (6, 9, 12, 13, 14),
)

# Glitch thresholds at 60 fps, SMPL proportions. The cleanest takes here peak at 0.22 m per frame
# (13 m/s: the follower's hand in a spin, on SMPL's longer arm) and 0.16 m second difference; capture
# glitches (a leg or forearm solved into a wrong pose for a few frames) move joints by 0.3-1.5 m.
MAX_STEP_M = 0.25
MAX_ACCEL_M = 0.2


def trim_settling_frames(joints: np.ndarray, max_step: float = MAX_STEP_M / 2, search: int = 60) -> tuple[int, int]:
    """(start, stop) dropping frames at either end where the capture is still settling (huge jumps).

    The CMU salsa takes open with a few solver frames that jump 0.2-0.5 m per frame; the take starts at
    the first frame from which three consecutive steps are all below ``max_step``.
    """
    step = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(axis=1)  # (T-1,)
    calm = step < max_step
    ok = calm[:-2] & calm[1:-1] & calm[2:]  # three calm steps from frame t

    def first(ok_: np.ndarray) -> int:
        hits = np.nonzero(ok_[:search])[0]
        return int(hits[0]) if hits.size else 0

    start = first(ok)
    stop = len(joints) - first(ok[::-1])
    return start, stop


def _flag_spans(flags: np.ndarray, gap: int) -> list[tuple[int, int]]:
    idx = np.nonzero(flags)[0]
    spans: list[tuple[int, int]] = []
    for i in idx:
        if spans and i - spans[-1][1] <= gap:
            spans[-1] = (spans[-1][0], int(i))
        else:
            spans.append((int(i), int(i)))
    return spans


def repair_glitches(
    joints: np.ndarray, max_step: float = MAX_STEP_M, max_accel: float = MAX_ACCEL_M, gap: int = 8, rounds: int = 3
) -> tuple[np.ndarray, int]:
    """Replace capture glitches by slerping the affected bones' directions across the bad frames.

    Bones are checked in groups (each limb chain, the upper trunk): a frame is bad for a group when one
    of its joints moves more than ``max_step`` to the next frame or has a second difference above
    ``max_accel`` (a jump, not a fast swing: real motion builds speed over several frames). Bad frames
    closer than ``gap`` merge into one span whose bone directions are slerped between the good frames on
    either side; the skeleton is rebuilt from the root with the rest lengths, so whatever hangs below a
    repaired bone follows it. Returns (joints, number of repaired group-frames).
    """
    from .bones import build_from_directions, slerp_unit

    out = np.array(joints, dtype=np.float64, copy=True)
    n = out.shape[0]
    repaired = 0
    for _ in range(rounds):
        changed = False
        for group in _GROUPS:
            x = out[:, list(group)]  # (T, G, 3)
            step = np.linalg.norm(np.diff(x, axis=0), axis=-1).max(axis=1)  # (T-1,)
            acc = np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).max(axis=1)  # (T-2,)
            bad = np.zeros(n, dtype=bool)
            bad[:-1] |= step > max_step
            bad[1:] |= step > max_step
            bad[1:-1] |= acc > max_accel
            spans = _flag_spans(bad, gap)
            if not spans:
                continue
            dirs = bone_directions(out)
            for a, b in spans:
                lo, hi = max(a - 1, 0), min(b + 1, n - 1)
                w = np.broadcast_to(((np.arange(lo, hi + 1) - lo) / max(hi - lo, 1))[:, None], (hi - lo + 1, len(group)))
                dirs[lo : hi + 1, list(group)] = slerp_unit(
                    np.broadcast_to(dirs[lo, list(group)], w.shape + (3,)),
                    np.broadcast_to(dirs[hi, list(group)], w.shape + (3,)),
                    w,
                )
                repaired += hi - lo + 1
            out = build_from_directions(out[:, 0], dirs)
            changed = True
        if not changed:
            break
    return out, repaired


def cmu_listed_fps(path: Path) -> float | None:
    """The capture rate CMU lists for ``<subject>_<trial>.bvh`` in ``cmu_trials.csv`` (looked for in the
    file's folder and the two above it), or None when the name is not a CMU trial or there is no listing."""
    m = re.fullmatch(r"(\d+)_(\d+)", path.stem)
    if m is None:
        return None
    for folder in (path.parent, *list(path.parents)[1:3]):
        listing = folder / CMU_TRIALS_CSV
        if listing.is_file():
            import csv

            with open(listing, newline="") as f:
                for row in csv.DictReader(f):
                    if int(row["subject"]) == int(m[1]) and int(row["trial"]) == int(m[2]):
                        return float(row["fps"])
            return None
    return None


def true_fps(path: Path, header_fps: float) -> float:
    """The frame rate a CMU BVH's frames really have.

    The bulk BVH conversion of the CMU database stamped 120 fps on every trial, also on the 326 that CMU
    captured at 60 fps (the salsa of subjects 60 and 61): read at 120, they play twice as fast. A header
    that claims more frames per second than CMU captured is therefore wrong; one that claims fewer comes
    from a converter that resampled (subject 5's CC_Base files: 60 fps of a 120 fps capture) and is right.
    """
    listed = cmu_listed_fps(path)
    return header_fps if listed is None else min(header_fps, listed)


def _snap_fps(fps: float) -> float:
    # "Frame Time: 0.008333" means 120 fps; 1/0.008333 = 120.0048 would break exact 2:1 decimation.
    return float(round(fps)) if abs(fps - round(fps)) < 1e-3 * fps else float(fps)


def capture_points(motion: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """(world points {name: (T,3)}, rest points {name: (3,)}, fps) of an ``engine.bvh.BvhMotion``.

    End Sites are named ``<parent>_end`` (the salsa rig's toes are only an End Site of the foot).
    """
    names = list(motion.names)
    parents = np.asarray(motion.parents)
    offsets = np.asarray(motion.offsets, dtype=np.float64)
    ends = list(motion.end_sites)
    world = np.asarray(motion.world_positions(include_end_sites=True), dtype=np.float64)  # (T, J+E, 3)
    rest = np.zeros((len(names), 3))  # rest pose: every rotation zero, root at the origin
    for j, p in enumerate(parents):  # BVH lists parents before children
        if p >= 0:
            rest[j] = rest[p] + offsets[j]
    pts = {n: world[:, j] for j, n in enumerate(names)}
    rst = {n: rest[j] for j, n in enumerate(names)}
    for k, (p, off) in enumerate(ends):
        name = f"{names[p]}_end"
        if name not in pts:  # a joint with several End Sites: keep the first
            pts[name] = world[:, len(names) + k]
            rst[name] = rest[p] + np.asarray(off, dtype=np.float64)
    return pts, rst, _snap_fps(float(motion.fps))


def _take_id(path: Path, rig: RigMap) -> str:
    # CMU files are <subject>_<take>; subjects 60 (leader) and 61 (follower) dance the same take together.
    m = re.fullmatch(r"(\d+)_(\d+)", path.stem)
    if m and m[1] in {"60", "61"}:
        return f"cmu_salsa_{m[2]}"
    return f"cmu_{path.stem}" if m else path.stem


def read_capture(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], RigMap, float]:
    """A CMU BVH take's capture points at 60 fps {name: (T, 3)}, rest points {name: (3,)}, rig and true
    frame rate (an added T-pose first frame dropped)."""
    from engine.bvh import read_bvh  # imported late: a cache hit needs no BVH parser

    points, rest, header_fps = capture_points(read_bvh(path))
    fps = true_fps(path, header_fps)
    rig = detect_rig(list(points))
    if rig.name in TPOSE_FIRST_FRAME:
        points = {k: v[1:] for k, v in points.items()}
    if fps != MOTION_FPS:
        points = {k: resample_positions(v, fps, MOTION_FPS) for k, v in points.items()}
    return points, rest, rig, fps


def load_bvh_clip(
    path: str | Path,
    *,
    ground: bool = True,
    cache_dir: str | Path | None = None,
    take_id: str | None = None,
) -> MotionClip:
    """A CMU BVH take -> 60 fps SMPL-24 ``MotionClip`` (see the module docstring for the retargeting)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"BVH file not found: {path}")
    info: dict[str, Any] = {}

    def compute() -> dict[str, np.ndarray]:
        points, rest, rig, fps = read_capture(path)
        joints, scale = retarget_to_smpl(points, rest, rig)
        start, stop = trim_settling_frames(joints)
        joints, repaired = repair_glitches(joints[start:stop])
        if ground:
            joints = ground_to_floor(joints)
        rest_y = np.stack(list(rest.values()))[:, 1]
        return {
            "joints": joints.astype(np.float32),
            "scale": np.array(scale),
            "src_fps": np.array(fps),
            "capture_height": np.array(float(rest_y.max() - rest_y.min())),
            "rig": np.array(rig.name),
            "trimmed": np.array([start, len(points[rig.hips[0]]) - stop]),
            "repaired_frames": np.array(repaired),
        }

    arrays = cached_arrays(cache_dir, path, f"bvh|ground={ground}", compute)
    info.update(
        path=str(path), rig=str(arrays["rig"]), scale=float(arrays["scale"]),
        src_fps=float(arrays["src_fps"]), capture_height=float(arrays["capture_height"]), grounded=ground,
        trimmed_frames=[int(v) for v in arrays["trimmed"]], repaired_frames=int(arrays["repaired_frames"]),
    )
    rig = next(r for r in RIGS if r.name == info["rig"])
    return MotionClip(
        joints=arrays["joints"],
        name=path.stem,
        take_id=take_id or _take_id(path, rig),
        source="bvh",
        meta=info,
    )


def load_bvh_paths(
    paths: list[str | Path] | tuple[str | Path, ...],
    *,
    ground: bool = True,
    cache_dir: str | Path | None = None,
) -> list[MotionClip]:
    """BVH files and/or folders of them (every ``*.bvh``, sorted) -> clips."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(files_in(p, ".bvh", "BVH"))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"BVH path not found: {p}")
    return [load_bvh_clip(f, ground=ground, cache_dir=cache_dir) for f in files]
