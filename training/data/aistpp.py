"""The official AIST++ annotation layout, turned into joints the way Bailando does it.

Expected layout (``aist_plusplus_final/`` of the AIST++ download)::

    <root>/motions/<sequence>.pkl         smpl_poses (N, 72), smpl_trans (N, 3), smpl_scaling (1,)
    <root>/splits/crossmodal_train.txt    one sequence name per line (also _val, _test)
    <root>/ignore_list.txt                sequences with bad fits (also accepted in splits/)
    <root>/all_musics/<music id>.wav      the songs (music id = field 4 of the name, e.g. mBR0)

Joints: ``transl = smpl_trans / smpl_scaling``; male SMPL at betas = 0 via
``engine.skeleton.forward_kinematics`` (which reproduces ``smplx.SMPL(gender='male').joints[:, :24]``,
so no SMPL model file is needed); 60 fps, y-up, metres. With ``smpl_model_dir`` the smplx package and
the user's SMPL model file are used instead.

Splits (the paper's): train = crossmodal_train minus the ignore list; test = crossmodal_test +
crossmodal_val (the author tested on both). ``MotionClip.split`` carries it.

The motion files are pickles. Unpickling can run arbitrary code, so they are read with an unpickler
that only rebuilds numpy arrays and scalars and refuses everything else.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from engine.skeleton import forward_kinematics
from training.errors import DataError, DataFormatError, UnsafeDataError

from .cache import cached_arrays
from .clip import MotionClip, ground_to_floor

SPLIT_FILES = {"train": "crossmodal_train.txt", "val": "crossmodal_val.txt", "test": "crossmodal_test.txt"}

# What a pickle of a dict of numpy arrays needs: array/scalar/dtype reconstruction only.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),  # pickles written by numpy >= 2
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # python-2-era pickles store array bytes through it
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafeDataError(
                f"refusing to load {module}.{name} from a motion pickle: only numpy arrays are allowed "
                "(is this really an AIST++ motion file?)"
            )
        if module.startswith("numpy._core") and not hasattr(np, "_core"):
            module = module.replace("numpy._core", "numpy.core")
        return super().find_class(module, name)


def load_motion_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Read an AIST++ motion ``.pkl`` safely -> {'smpl_poses' (N,72), 'smpl_trans' (N,3), 'smpl_scaling' (1,)}."""
    path = Path(path)
    try:
        data = _ArrayUnpickler(io.BytesIO(path.read_bytes())).load()
    except UnsafeDataError as exc:
        raise UnsafeDataError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError) as exc:
        raise DataFormatError(f"{path}: not a readable motion pickle ({exc})") from exc
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a dict of arrays, got {type(data).__name__}")
    missing = {"smpl_poses", "smpl_trans", "smpl_scaling"} - set(data)
    if missing:
        raise DataFormatError(f"{path}: missing {sorted(missing)} (an AIST++ motion file has all three)")
    poses = np.asarray(data["smpl_poses"], dtype=np.float64).reshape(len(data["smpl_poses"]), -1)
    trans = np.asarray(data["smpl_trans"], dtype=np.float64)
    scaling = np.asarray(data["smpl_scaling"], dtype=np.float64).reshape(-1)
    if poses.shape[1] != 72 or trans.shape != (poses.shape[0], 3) or scaling.size != 1:
        raise DataFormatError(
            f"{path}: shapes smpl_poses {poses.shape}, smpl_trans {trans.shape}, smpl_scaling "
            f"{scaling.shape} do not match (N, 72), (N, 3), (1,)"
        )
    if not (np.all(np.isfinite(poses)) and np.all(np.isfinite(trans))) or scaling[0] <= 0:
        raise DataFormatError(f"{path}: non-finite poses/translation or non-positive scaling")
    return {"smpl_poses": poses, "smpl_trans": trans, "smpl_scaling": scaling}


def motion_to_joints(motion: dict[str, np.ndarray], smpl_model_dir: str | Path | None = None) -> np.ndarray:
    """SMPL parameters -> (N, 24, 3) joints, as Bailando's preprocessing computes them."""
    transl = motion["smpl_trans"] / motion["smpl_scaling"][0]
    if smpl_model_dir is None:
        return forward_kinematics(motion["smpl_poses"], transl)
    import smplx  # optional path: the user's own SMPL model file
    import torch

    model = smplx.SMPL(model_path=str(smpl_model_dir), gender="MALE", batch_size=len(transl))
    with torch.no_grad():
        poses = torch.as_tensor(motion["smpl_poses"], dtype=torch.float32)
        out = model(global_orient=poses[:, :3], body_pose=poses[:, 3:],
                    transl=torch.as_tensor(transl, dtype=torch.float32))
    return out.joints[:, :24].numpy().astype(np.float64)


def read_name_list(path: Path) -> list[str]:
    """Sequence names from a split or ignore file: one per line, extensions (.json/.pkl) dropped."""
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line.split()[0].removesuffix(".json").removesuffix(".pkl"))
    return names


def paper_splits(root: str | Path) -> dict[str, list[str]]:
    """{'train': crossmodal_train - ignore list, 'test': crossmodal_test + crossmodal_val} for ``root``."""
    root = Path(root)
    split_dir = root / "splits"
    lists = {}
    for split, fname in SPLIT_FILES.items():
        p = split_dir / fname
        if not p.is_file():
            raise DataError(f"AIST++ split file missing: {p} (expected the official aist_plusplus_final layout)")
        lists[split] = read_name_list(p)
    ignore: set[str] = set()
    for p in (root / "ignore_list.txt", split_dir / "ignore_list.txt"):
        if p.is_file():
            ignore |= set(read_name_list(p))
            break
    else:
        raise DataError(f"AIST++ ignore list missing: {root / 'ignore_list.txt'}")
    train = [n for n in lists["train"] if n not in ignore]
    test = list(dict.fromkeys(lists["test"] + lists["val"]))
    return {"train": train, "test": test}


def load_aistpp(
    root: str | Path,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    music_dir: str | Path | None = None,
    smpl_model_dir: str | Path | None = None,
    ground: bool = False,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
) -> list[MotionClip]:
    """Clips of the paper's AIST++ splits under ``root``, with ``split`` set to 'train' or 'test'.

    ``ground=False`` (default) keeps AIST++'s own floor height, exactly as Bailando's JSON data; the
    music path defaults to ``<root>/all_musics``. ``limit`` keeps the first N of each split (quick runs).
    """
    root = Path(root)
    motion_dir = root / "motions"
    if not motion_dir.is_dir():
        raise DataError(f"AIST++ motions folder not found: {motion_dir} (point the config at aist_plusplus_final)")
    music_dir = Path(music_dir) if music_dir is not None else root / "all_musics"
    names = paper_splits(root)
    clips = []
    for split in splits:
        if split not in names:
            raise DataError(f"unknown AIST++ split {split!r}: use 'train' and/or 'test'")
        for seq in names[split][:limit]:
            path = motion_dir / f"{seq}.pkl"
            if not path.is_file():
                raise DataError(f"{path} is listed in the {split} split but missing from {motion_dir}")

            def compute(path: Path = path) -> dict[str, np.ndarray]:
                joints = motion_to_joints(load_motion_pickle(path), smpl_model_dir)
                if ground:
                    joints = ground_to_floor(joints)
                return {"joints": joints.astype(np.float32)}

            tag = f"aistpp|smpl={smpl_model_dir}|ground={ground}"
            arrays = cached_arrays(cache_dir, path, tag, compute)
            fields = seq.split("_")
            song = music_dir / f"{fields[4]}.wav" if len(fields) >= 5 else None
            clips.append(
                MotionClip(
                    joints=arrays["joints"],
                    name=seq,
                    take_id=seq,
                    source="aistpp",
                    music_path=song if song is not None and song.is_file() else None,
                    split=split,
                    meta={"path": str(path), "grounded": ground},
                )
            )
    return clips
