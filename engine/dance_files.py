"""Write a ``Dance`` to disk: NPZ (joints, codes, SMPL-style poses/trans), BVH and a JSON summary.

All files of one export appear together or not at all: each is written to a hidden temporary file
in the output folder and renamed into place only once every file is complete, so a failure or a
Ctrl-C leaves no partial output.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .bvh import BvhError, write_bvh
from .clock import MOTION_FPS
from .dance import Dance
from .errors import InvalidOptionError
from .files import OutputError, atomic_files, check_output_folder
from .rotation import quaternion_to_axis_angle
from .skeleton import JOINT_NAMES, REST_JOINTS, check_joints

FORMATS = ("npz", "bvh", "json")


def dance_arrays(dance: Dance) -> dict[str, np.ndarray]:
    """The arrays of the NPZ format.

    joints (T,24,3) y-up metres; fps; codes_up/codes_down (N,); music_beats (frame indices at fps);
    and, when rotations were solved, SMPL-style ``poses`` (T,72) axis-angle and ``trans`` (T,3) with
    the SMPL convention ``pelvis = J_0 + trans`` (J_0 = the male SMPL rest pelvis), plus the rest
    skeleton the rotations refer to.
    """
    arrays: dict[str, np.ndarray] = {
        "joints": np.asarray(dance.joints, dtype=np.float32),
        "fps": np.asarray(dance.fps, dtype=np.float32),
        "codes_up": np.asarray(dance.codes_up, dtype=np.int64),
        "codes_down": np.asarray(dance.codes_down, dtype=np.int64),
    }
    if dance.music_beats is not None:
        arrays["music_beats"] = np.asarray(dance.music_beats, dtype=np.int64)
    if dance.rotations is not None:
        aa = quaternion_to_axis_angle(dance.rotations)  # (T, 24, 3)
        arrays["poses"] = aa.reshape(aa.shape[0], 72).astype(np.float32)
        arrays["trans"] = (np.asarray(dance.joints[:, 0], dtype=np.float64) - REST_JOINTS[0]).astype(np.float32)
        arrays["rest_joints"] = np.asarray(dance.rest_joints, dtype=np.float32)
    return arrays


def dance_summary(dance: Dance, files: dict[str, str] | None = None) -> dict:
    return {
        "song": dance.song_path,
        "frames": dance.num_frames,
        "fps": dance.fps,
        "duration_s": round(dance.duration, 4),
        "tokens": int(len(dance.codes_up)),
        "music_beats": None if dance.music_beats is None else int(len(dance.music_beats)),
        "files": files or {},
        **{k: v for k, v in dance.meta.items() if k not in ("song",)},
    }


def check_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """The output formats asked for ("npz,bvh" or a list), without repeats; raises ``InvalidOptionError``
    for an unknown one or none at all."""
    if isinstance(formats, str):
        formats = formats.split(",")
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise InvalidOptionError(f"unknown output format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if not chosen:
        raise InvalidOptionError(f"no output format given; choose one or more of {', '.join(FORMATS)}")
    return chosen


def write_dance(
    dance: Dance,
    out_dir: str | Path,
    stem: str,
    formats: Iterable[str] = FORMATS,
    on_file: Callable[[Path], None] | None = None,
    extra_arrays: dict[str, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write ``OUTDIR/<stem>.<ext>`` for each format; all appear together or none does, with the
    permissions of the user's umask. Raises ``OutputError`` when the folder cannot be written (a file in
    the way, read-only, a full disk), leaving nothing behind. ``extra_arrays`` go into the NPZ too (a
    follower's ``leader_joints``)."""
    formats = check_formats(formats)
    if "bvh" in formats and dance.rotations is None:
        raise InvalidOptionError("BVH needs joint rotations; generate with rotations enabled")
    out_dir = check_output_folder(out_dir)
    final = {fmt: out_dir / f"{stem}.{fmt}" for fmt in formats}
    for path in final.values():
        if path.is_dir():
            raise OutputError(f"cannot write {path}: a folder of that name is in the way")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_files(list(final.values())) as temps:
            for fmt, tmp in zip(formats, temps):
                _write_format(dance, fmt, tmp, final, extra_arrays or {})
        if on_file is not None:
            for path in final.values():
                on_file(path)
    except OSError as exc:
        raise OutputError(f"cannot write the dance to {out_dir}: {exc.strerror or exc}") from None
    except BvhError as exc:
        raise OutputError(str(exc)) from None
    return final


def _write_format(dance: Dance, fmt: str, tmp: Path, final: dict[str, Path],
                  extra_arrays: dict[str, np.ndarray]) -> None:
    """Write ``dance`` in one format to ``tmp`` (its final name ``final[fmt]``)."""
    if fmt == "npz":
        # Zipped in memory first: a zip writer that fails half-way (a full disk) leaves an object
        # that errors again when it is collected.
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **dance_arrays(dance), **extra_arrays)
        tmp.write_bytes(buffer.getbuffer())
    elif fmt == "bvh":
        write_bvh(tmp, dance.rotations, dance.translation, dance.rest_joints, dance.fps)
    elif fmt == "json":
        summary = dance_summary(dance, {f: str(p.name) for f, p in final.items()})
        tmp.write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_dance_joints(path: str | Path) -> np.ndarray:
    """World joints (T, 24, 3) at 60 fps, y-up metres, of a dance file the engine wrote: its NPZ
    (``joints`` and ``fps``) or its BVH (SMPL joint names, y-up metres). Raises ``InvalidOptionError``
    naming what is wrong with any other file."""
    from .bvh import read_bvh
    from .postprocess import resample_joints

    path = Path(path)
    if not path.is_file():
        raise InvalidOptionError(f"dance file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "joints" not in data.files or "fps" not in data.files:
                    raise InvalidOptionError(f"{path.name} is not a dance NPZ of this engine (it needs 'joints' "
                                             f"and 'fps'; it has {', '.join(data.files) or 'nothing'})")
                joints, fps = np.asarray(data["joints"], dtype=np.float64), float(data["fps"])
        except (OSError, ValueError) as exc:
            raise InvalidOptionError(f"{path.name} is not a readable NPZ file: {exc}") from None
    elif suffix == ".bvh":
        motion = read_bvh(path)
        missing = [n for n in JOINT_NAMES if n not in motion.names]
        if missing:
            raise InvalidOptionError(f"{path.name} is not an SMPL BVH (the engine's export): it has no "
                                     f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        world = np.asarray(motion.world_positions(), dtype=np.float64)  # (T, J, 3) in file order
        joints, fps = world[:, [list(motion.names).index(n) for n in JOINT_NAMES]], float(motion.fps)
    else:
        raise InvalidOptionError(f"{path.name}: a dance is read from the engine's .npz or .bvh, "
                                 f"not {suffix or 'a file without extension'}")
    joints = check_joints(joints, path.name)
    if not np.isfinite(fps) or fps <= 0:
        raise InvalidOptionError(f"{path.name}: frame rate {fps} is not a positive number")
    return joints if fps == MOTION_FPS else resample_joints(joints, fps, MOTION_FPS)
