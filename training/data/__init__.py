"""Training data: real motion capture as 60 fps SMPL-24 joints (y-up, metres), windows and splits.

Sources: the official AIST++ layout (``aistpp``), Bailando's JSON files (``bailando_json``), CMU BVH
retargeted onto SMPL (``bvh_mocap``), AIST++ CSV slices (``csv_clips``). ``load_sources(config)``
gathers them, ``split_by_take`` keeps whole takes on one side, ``MotionWindows`` cuts windows.
"""

from training.errors import DataError, DataFormatError, UnsafeDataError

from .aistpp import load_aistpp, load_motion_pickle, paper_splits
from .bailando_json import load_bailando_json, load_bailando_json_dir
from .bvh_mocap import load_bvh_clip, load_bvh_paths, retarget_to_smpl
from .cache import cached_arrays
from .clip import PREPROCESS_VERSION, MotionClip, ground_to_floor
from .csv_clips import load_csv_clip, load_csv_dir
from .sources import DataConfig, load_sources, load_split, load_windows
from .windows import MotionWindows, Split, split_by_take

__all__ = [
    "PREPROCESS_VERSION", "DataConfig", "DataError", "DataFormatError", "MotionClip",
    "MotionWindows", "Split", "UnsafeDataError", "cached_arrays", "ground_to_floor", "load_aistpp",
    "load_bailando_json", "load_bailando_json_dir", "load_bvh_clip", "load_bvh_paths", "load_csv_clip",
    "load_csv_dir", "load_motion_pickle", "load_sources", "load_split", "load_windows", "paper_splits",
    "retarget_to_smpl", "split_by_take",
]
