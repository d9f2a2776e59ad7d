"""BVH (Biovision hierarchy) motion files: write the SMPL skeleton, read real-world rigs.

Conventions, the same as Blender's BVH importer/exporter (``io_anim_bvh``):

- A joint's rotation channels compose in the listed order about the parent-aligned axes: channels
  "Zrotation Xrotation Yrotation" mean ``R = Rz(z) @ Rx(x) @ Ry(y)``; angles in degrees.
- FK: ``G_j = G_parent @ R_j`` and ``X_j = X_parent + G_parent @ t_j`` where ``t_j`` is the joint's OFFSET,
  or its position channels when it has them (Blender treats position channels as the full local
  translation; the files written here keep the root OFFSET at zero, so every reader agrees).
- Units and axes are the file's own. The engine writes metres, y-up (SMPL); Blender's importer with its
  default axes (forward -Z, up Y) turns that into z-up exactly like ``engine.skeleton.yup_to_zup``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dance import check_motion
from .errors import BvhError, BvhFormatError, InvalidOptionError
from .files import atomic_file
from .rotation import (
    euler_to_matrix,
    make_continuous,
    make_euler_continuous,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from .skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, bone_offsets

# Rotation order written by ``write_bvh``. The middle angle has the +-90 degree gimbal lock; X in the
# middle puts it at a 90-degree forward bend, which dance poses reach less often than a 90-degree yaw.
WRITE_ORDER = "ZXY"
# End Site of a leaf joint (head, toes, hand tips): this fraction of the leaf's own bone, continued.
END_SITE_FRACTION = 0.5

_POSITION_CHANNELS = {"xposition": 0, "yposition": 1, "zposition": 2}
_ROTATION_CHANNELS = {"xrotation": "X", "yrotation": "Y", "zrotation": "Z"}






@dataclass
class BvhMotion:
    """A BVH file in memory, in the file's units and axes.

    names:        joint names (End Sites excluded), in file order; parents[j] < j, root parent -1.
    offsets:      (J, 3) OFFSET of each joint from its parent.
    channels:     per joint, the channel names as written ("Xposition", "Zrotation", ...).
    fps:          1 / Frame Time.
    rotations:    (T, J, 4) local joint rotations, unit quaternions w-first.
    translations: (T, J, 3) local joint translations: the OFFSET, replaced by position channels where present.
    end_sites:    (parent joint index, (3,) offset) of every End Site.
    """

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    fps: float
    rotations: np.ndarray
    translations: np.ndarray
    end_sites: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def root_translation(self) -> np.ndarray:
        """(T, 3) world position of the root joint."""
        return self.translations[:, 0]

    def world_positions(self, include_end_sites: bool = False) -> np.ndarray:
        """FK in the file's units and axes -> (T, J, 3), or (T, J + E, 3) with the End Sites appended."""
        local = quaternion_to_matrix(self.rotations)  # (T, J, 3, 3)
        glob = np.empty_like(local)
        pos = np.empty(self.translations.shape)
        for j, p in enumerate(self.parents):
            if p < 0:
                glob[:, j] = local[:, j]
                pos[:, j] = self.translations[:, j]
            else:
                glob[:, j] = glob[:, p] @ local[:, j]
                pos[:, j] = pos[:, p] + np.einsum("tij,tj->ti", glob[:, p], self.translations[:, j])
        if not include_end_sites or not self.end_sites:
            return pos
        ends = [pos[:, p] + glob[:, p] @ off for p, off in self.end_sites]
        return np.concatenate([pos, np.stack(ends, axis=1)], axis=1)


# --- reading -----------------------------------------------------------------------------------------------
def _tokens(lines: list[str]) -> list[tuple[str, int]]:
    """Hierarchy tokens with their 1-based line numbers; braces are tokens even when glued to words."""
    out = []
    for number, line in enumerate(lines, start=1):
        out.extend((tok, number) for tok in re.findall(r"[{}]|[^\s{}]+", line))
    return out


class _HierarchyParser:
    def __init__(self, tokens: list[tuple[str, int]], path: str):
        self.tokens = tokens
        self.i = 0
        self.path = path
        self.names: list[str] = []
        self.parents: list[int] = []
        self.offsets: list[np.ndarray] = []
        self.channels: list[tuple[str, ...]] = []
        self.end_sites: list[tuple[int, np.ndarray]] = []

    def error(self, message: str) -> BvhFormatError:
        line = self.tokens[min(self.i, len(self.tokens) - 1)][1] if self.tokens else 1
        return BvhFormatError(f"{self.path}, line {line}: {message}")

    def next(self, what: str) -> str:
        if self.i >= len(self.tokens):
            raise self.error(f"the file ends inside the HIERARCHY, expected {what}")
        tok = self.tokens[self.i][0]
        self.i += 1
        return tok

    def expect(self, word: str) -> None:
        tok = self.next(repr(word))
        if tok.upper() != word.upper():
            self.i -= 1
            raise self.error(f"expected {word!r}, found {tok!r}")

    def number(self, what: str) -> float:
        tok = self.next(what)
        try:
            value = float(tok)
        except ValueError:
            self.i -= 1
            raise self.error(f"expected a number for {what}, found {tok!r}") from None
        if not np.isfinite(value):
            self.i -= 1
            raise self.error(f"{what} is not finite ({tok!r})")
        return value

    def offset(self) -> np.ndarray:
        self.expect("OFFSET")
        return np.array([self.number("OFFSET x"), self.number("OFFSET y"), self.number("OFFSET z")])

    def joint(self, parent: int) -> None:
        name_parts = []
        while self.i < len(self.tokens) and self.tokens[self.i][0] != "{":
            name_parts.append(self.next("a joint name"))
        if not name_parts:
            raise self.error("a joint has no name")
        name = " ".join(name_parts)
        self.expect("{")
        index = len(self.names)
        self.names.append(name)
        self.parents.append(parent)
        self.offsets.append(self.offset())
        self.expect("CHANNELS")
        count_tok = self.next("the channel count")
        if not count_tok.isdigit():
            self.i -= 1
            raise self.error(f"expected the channel count of joint {name!r}, found {count_tok!r}")
        chans = tuple(self.next("a channel name") for _ in range(int(count_tok)))
        for c in chans:
            if c.lower() not in _POSITION_CHANNELS and c.lower() not in _ROTATION_CHANNELS:
                raise self.error(f"unknown channel {c!r} in joint {name!r} (expected X/Y/Z position/rotation)")
        if len({c.lower() for c in chans}) != len(chans):
            raise self.error(f"joint {name!r} lists a channel twice: {' '.join(chans)}")
        self.channels.append(chans)
        while True:
            tok = self.next("'JOINT', 'End Site' or '}'")
            upper = tok.upper()
            if upper == "}":
                return
            if upper == "JOINT":
                self.joint(index)
            elif upper == "END":
                self.expect("Site")
                # Some exporters name End Sites; skip anything before the brace.
                while self.i < len(self.tokens) and self.tokens[self.i][0] != "{":
                    self.i += 1
                self.expect("{")
                self.end_sites.append((index, self.offset()))
                self.expect("}")
            else:
                self.i -= 1
                raise self.error(f"expected 'JOINT', 'End Site' or '}}' in joint {name!r}, found {tok!r}")


def read_bvh(path: str | os.PathLike) -> BvhMotion:
    """Parse a BVH file (any channel order per joint, End Sites, one root) -> ``BvhMotion``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BvhError(f"cannot read BVH file {path}: {exc.strerror or exc}") from exc
    lines = text.lstrip("\ufeff").splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.upper() != "HIERARCHY":
        raise BvhFormatError(f"{path} is not a BVH file: it does not start with 'HIERARCHY'")
    motion_line = next((k for k, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if motion_line is None:
        raise BvhFormatError(f"{path}: no 'MOTION' section; the file is truncated or not a BVH file")
    parser = _HierarchyParser(_tokens(lines[:motion_line]), str(path))
    parser.expect("HIERARCHY")
    parser.expect("ROOT")
    parser.joint(-1)
    if parser.i < len(parser.tokens):
        tok = parser.tokens[parser.i][0]
        if tok.upper() == "ROOT":
            raise parser.error("files with more than one ROOT are not supported")
        raise parser.error(f"unexpected {tok!r} after the root joint's closing brace")

    frames, frame_time, first_data = _motion_header(lines, motion_line, path)
    channels = parser.channels
    num_channels = sum(len(c) for c in channels)
    data = _motion_data(lines[first_data:], first_data, frames, num_channels, path)  # (T, C)

    num_joints = len(parser.names)
    offsets = np.stack(parser.offsets)
    rotations = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (frames, num_joints, 1))
    translations = np.broadcast_to(offsets, (frames, num_joints, 3)).copy()
    col = 0
    for j, chans in enumerate(channels):
        rot_order = ""
        rot_cols = []
        for c in chans:
            key = c.lower()
            if key in _POSITION_CHANNELS:
                translations[:, j, _POSITION_CHANNELS[key]] = data[:, col]
            else:
                rot_order += _ROTATION_CHANNELS[key]
                rot_cols.append(col)
            col += 1
        if rot_order:
            angles = np.radians(data[:, rot_cols])  # (T, k)
            # Missing axes (fewer than 3 rotation channels) are zero rotations about the remaining axes.
            for axis in "XYZ":
                if axis not in rot_order:
                    rot_order += axis
            if angles.shape[1] < 3:
                angles = np.concatenate([angles, np.zeros((frames, 3 - angles.shape[1]))], axis=1)
            rotations[:, j] = matrix_to_quaternion(euler_to_matrix(angles, rot_order))
    return BvhMotion(
        names=parser.names,
        parents=np.array(parser.parents, dtype=np.int64),
        offsets=offsets,
        channels=channels,
        fps=1.0 / frame_time,
        rotations=make_continuous(rotations, axis=0),
        translations=translations,
        end_sites=parser.end_sites,
    )


def _motion_header(lines: list[str], motion_line: int, path: Path) -> tuple[int, float, int]:
    k = motion_line + 1
    while k < len(lines) and not lines[k].strip():
        k += 1
    m = re.fullmatch(r"\s*frames\s*:\s*(\d+)\s*", lines[k], re.IGNORECASE) if k < len(lines) else None
    if m is None:
        raise BvhFormatError(f"{path}, line {k + 1}: expected 'Frames: <count>' after MOTION")
    frames = int(m.group(1))
    k += 1
    m = re.fullmatch(r"\s*frame\s+time\s*:\s*(\S+)\s*", lines[k], re.IGNORECASE) if k < len(lines) else None
    if m is None:
        raise BvhFormatError(f"{path}, line {k + 1}: expected 'Frame Time: <seconds>' after the frame count")
    try:
        frame_time = float(m.group(1))
    except ValueError:
        frame_time = float("nan")
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise BvhFormatError(f"{path}, line {k + 1}: Frame Time must be a positive number of seconds, "
                             f"found {m.group(1)!r}")
    if frames < 1:
        raise BvhFormatError(f"{path}: the file has no motion frames (Frames: 0)")
    return frames, frame_time, k + 1


def _motion_data(rows: list[str], first_line: int, frames: int, num_channels: int, path: Path) -> np.ndarray:
    numbered = [(first_line + k + 1, row) for k, row in enumerate(rows) if row.strip()]
    if len(numbered) != frames:
        raise BvhFormatError(
            f"{path}: the header declares {frames} frames but the file holds {len(numbered)} "
            "(truncated or edited file; fix 'Frames:' or re-export)"
        )
    tokens = " ".join(row for _, row in numbered).split()
    if len(tokens) != frames * num_channels:
        for number, row in numbered:
            if len(row.split()) != num_channels:
                raise BvhFormatError(f"{path}, line {number}: {len(row.split())} values, "
                                     f"but the hierarchy has {num_channels} channels")
    try:
        data = np.array(tokens, dtype=np.float64).reshape(frames, num_channels)
    except ValueError:
        for number, row in numbered:
            for tok in row.split():
                try:
                    float(tok)
                except ValueError:
                    raise BvhFormatError(f"{path}, line {number}: {tok!r} is not a number") from None
        raise
    if not np.all(np.isfinite(data)):
        bad = int(np.argwhere(~np.isfinite(data))[0, 0])
        raise BvhFormatError(f"{path}, line {numbered[bad][0]}: NaN or infinite value in the motion data")
    return data


# --- writing -----------------------------------------------------------------------------------------------
def _check_motion(rotations: np.ndarray, translation: np.ndarray, rest_joints: np.ndarray, fps: float,
                  joint_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rotations, translation, rest_joints = check_motion(rotations, translation, rest_joints, fps)
    if len(joint_names) != NUM_JOINTS or any(not n or re.search(r"[\s{}]", n) for n in joint_names):
        raise InvalidOptionError(f"joint_names must be {NUM_JOINTS} names without spaces or braces")
    return rotations, translation, rest_joints


def _depth_first_order() -> list[int]:
    """SMPL joints in the order the hierarchy lists them (and the motion lines hold their channels)."""
    out: list[int] = []

    def visit(j: int) -> None:
        out.append(j)
        for c in range(NUM_JOINTS):
            if PARENTS[c] == j:
                visit(c)

    visit(0)
    return out


def _hierarchy_text(rest_joints: np.ndarray, joint_names: tuple[str, ...], order: str) -> str:
    offsets = bone_offsets(rest_joints)
    offsets[0] = 0.0  # root: the position channels carry the pelvis position
    rot_channels = " ".join(f"{axis}rotation" for axis in order)
    children = [[c for c in range(NUM_JOINTS) if PARENTS[c] == j] for j in range(NUM_JOINTS)]
    out = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "\t" * depth
        out.append(f"{pad}{'ROOT' if j == 0 else 'JOINT'} {joint_names[j]}")
        out.append(pad + "{")
        out.append(f"{pad}\tOFFSET {offsets[j, 0]:.6f} {offsets[j, 1]:.6f} {offsets[j, 2]:.6f}")
        if j == 0:
            out.append(f"{pad}\tCHANNELS 6 Xposition Yposition Zposition {rot_channels}")
        else:
            out.append(f"{pad}\tCHANNELS 3 {rot_channels}")
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            end = bone_offsets(rest_joints)[j] * END_SITE_FRACTION
            out.extend([f"{pad}\tEnd Site", pad + "\t{", f"{pad}\t\tOFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}",
                        pad + "\t}"])
        out.append(pad + "}")

    emit(0, 0)
    return "\n".join(out) + "\n"


def write_bvh(
    path: str | os.PathLike,
    rotations: np.ndarray,
    translation: np.ndarray,
    rest_joints: np.ndarray,
    fps: float,
    joint_names: tuple[str, ...] = JOINT_NAMES,
    *,
    order: str = WRITE_ORDER,
) -> Path:
    """Write an SMPL-24 motion as BVH (metres, y-up; atomic: a failed write leaves ``path`` untouched).

    The engine's BVH is y-up like every motion inside the engine; the add-on's BVH (Blender's exporter,
    ``addon/blender/rig_export.py``) is z-up like Blender. Both use the .bvh extension.

    rotations (T, 24, 4) local quaternions w-first, translation (T, 3) such that the pelvis is at
    ``rest_joints[0] + translation`` (the FK convention of ``engine.skeleton``), rest_joints (24, 3).
    """
    rotations, translation, rest_joints = _check_motion(rotations, translation, rest_joints, fps, joint_names)
    path = Path(path)
    if path.suffix.lower() != ".bvh":
        raise InvalidOptionError(f"a BVH file name must end in .bvh, got {path.name!r}")
    if not path.parent.is_dir():
        raise BvhError(f"cannot write {path}: the folder {path.parent} does not exist")
    order = order.upper()
    euler = matrix_to_euler(quaternion_to_matrix(rotations), order)  # (T, 24, 3)
    euler = np.degrees(make_euler_continuous(euler, axis=0))
    root = rest_joints[0] + translation  # (T, 3) world pelvis position
    euler = euler[:, _depth_first_order()]  # channel order = hierarchy order
    data = np.concatenate([root, euler.reshape(len(euler), -1)], axis=1)  # (T, 3 + 72)

    header = _hierarchy_text(rest_joints, tuple(joint_names), order)
    header += f"MOTION\nFrames: {len(data)}\nFrame Time: {1.0 / float(fps):.8f}\n"
    try:
        with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(header)
            np.savetxt(f, data, fmt="%.6f", delimiter=" ")
    except OSError as exc:
        raise BvhError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
