"""One entry point for the training stages: a ``DataConfig`` -> clips -> train/validation windows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from training.errors import DataError

from .aistpp import load_aistpp
from .augment import augment_clips, hold_out_tail
from .bailando_json import load_bailando_json_dir
from .bvh_mocap import load_bvh_paths
from .clip import MotionClip
from .csv_clips import load_csv_dir
from .styles import label_styles
from .windows import MotionWindows, Split, split_by_take


@dataclass
class DataConfig:
    """Where the motion comes from and how it is cut. Paths may be absolute or relative to the CWD.

    aistpp_root:        the official ``aist_plusplus_final`` folder (motions/, splits/, ignore_list.txt).
    aistpp_music_dir:   AIST++ songs (default ``<aistpp_root>/all_musics``); also used for CSV/JSON clips.
    smpl_model_dir:     optional SMPL model folder for smplx (the built-in male FK is exact without it).
    bailando_json_dirs: folders of Bailando's preprocessed JSON files.
    bvh_paths:          BVH files or folders (CMU rigs).
    aistpp_csv_dirs:    folders of AIST++ CSV slices.
    cache_dir:          where preprocessed arrays are kept (None: no cache).
    ground:             put every source's feet on y = 0.
    window, stride:     training window length and stride in 60 fps frames.
    val_fraction, seed: validation share of the takes without a prescribed split, and the split seed.
    split_by_style:     hold out ``val_fraction`` of each style's takes (``training.data.styles``).
    single_take_holdout: for a style with a single take, this share of its end is held out as a take
                        of its own (0: off).
    mirror:             add the left/right mirror image of every training clip.
    tempo_rates:        add every training clip (without a recorded song) re-timed to these rates.
    tempo_drift:        add every such clip once more at a rate drifting up to this share either way
                        (0: off), with period ``tempo_drift_period_s`` (``augment.drift_clip``).
    catch_up:           add this many sets of catch-up pieces of every such clip: a few seconds each,
                        starting out of phase with their accompaniment (``augment.catch_up_clips``).
    style_balance:      GPT stage: draw windows with weight count(style) ** -style_balance (0: uniform,
                        1: every style equally often).
    Augmented copies are of the training side only; validation clips are the takes as captured.
    """

    aistpp_root: str | None = None
    aistpp_music_dir: str | None = None
    smpl_model_dir: str | None = None
    bailando_json_dirs: list[str] = field(default_factory=list)
    bvh_paths: list[str] = field(default_factory=list)
    aistpp_csv_dirs: list[str] = field(default_factory=list)
    cache_dir: str | None = None
    ground: bool = True
    window: int = 240
    stride: int = 40
    val_fraction: float = 0.1
    seed: int = 0
    split_by_style: bool = False
    single_take_holdout: float = 0.0
    mirror: bool = False
    tempo_rates: list[float] = field(default_factory=list)
    tempo_drift: float = 0.0
    tempo_drift_period_s: float = 8.0
    catch_up: int = 0
    style_balance: float = 0.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise DataError(f"unknown data option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(values))


def load_sources(config: DataConfig | Mapping[str, Any]) -> list[MotionClip]:
    """Every clip the config names, each 60 fps SMPL-24 y-up metres with a take id."""
    cfg = config if isinstance(config, DataConfig) else DataConfig.from_dict(config)
    music = cfg.aistpp_music_dir
    clips: list[MotionClip] = []
    if cfg.aistpp_root:
        clips += load_aistpp(cfg.aistpp_root, music_dir=music, smpl_model_dir=cfg.smpl_model_dir,
                             ground=cfg.ground, cache_dir=cfg.cache_dir)
    for folder in cfg.bailando_json_dirs:
        clips += load_bailando_json_dir(folder, ground=cfg.ground, music_dir=music, cache_dir=cfg.cache_dir)
    if cfg.bvh_paths:
        clips += load_bvh_paths([Path(p) for p in cfg.bvh_paths], ground=cfg.ground, cache_dir=cfg.cache_dir)
    for folder in cfg.aistpp_csv_dirs:
        clips += load_csv_dir(folder, ground=cfg.ground, music_dir=music, cache_dir=cfg.cache_dir)
    if not clips:
        raise DataError("the data config names no sources: set aistpp_root, bailando_json_dirs, bvh_paths "
                        "or aistpp_csv_dirs")
    label_styles(clips)
    clips = hold_out_tail(clips, cfg.single_take_holdout)
    names = [c.name for c in clips]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"the same clip is listed twice: {dup[:5]} (check overlapping paths in the config)")
    return clips


def load_windows(config: DataConfig | Mapping[str, Any]) -> tuple[MotionWindows, MotionWindows, Split]:
    """(train windows, validation windows, the clip split) for a config. The training windows cover the
    augmented copies of the training clips too (``mirror``, ``tempo_rates``, ``tempo_drift``,
    ``catch_up``); ``split`` holds the takes as loaded."""
    cfg = config if isinstance(config, DataConfig) else DataConfig.from_dict(config)
    split = load_split(cfg)
    train = augment_clips(split.train, cfg.mirror, cfg.tempo_rates, cfg.tempo_drift, cfg.tempo_drift_period_s,
                          cfg.catch_up)
    return (MotionWindows(train, cfg.window, cfg.stride), MotionWindows(split.val, cfg.window, cfg.stride),
            split)


def load_split(config: DataConfig | Mapping[str, Any]) -> Split:
    """The config's clips split into training and held-out takes (no augmented copies)."""
    cfg = config if isinstance(config, DataConfig) else DataConfig.from_dict(config)
    return split_by_take(load_sources(cfg), cfg.val_fraction, cfg.seed, by_style=cfg.split_by_style)
