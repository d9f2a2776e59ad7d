"""The cross-conditional motion GPT on frozen VQ-VAE codes (docs/REFERENCE.md §3.1).

``python -m training gpt --config training/configs/paper_gpt.yaml``

Every 240-frame window (stride 8 frames = 1 token) is encoded by the frozen VQ-VAE of ``init.vqvae_run``
into 30 (up, down) codes; the codes are computed once and cached in the run folder. Each window's
music is the 7.5 fps features of its clip's song (or synthesised accompaniment, see
``engine.accompaniment``) from the window's first token on; its style is its clip's
(``training.data.styles``), dropped to "any" with probability ``gpt.style_pdrop`` when the GPT has a
style input (``gpt.n_styles``). Alignment as the official code:
inputs codes[0..28], targets codes[1..29], music m[1..29] (the music of the *target* token).
Loss CE(up) + CE(down). The music is standardised per column with the training windows' mean and std
(recorded in the run, exported into the model config, applied by the engine before the GPT), unless
``music.normalise`` is false (the official recipe: raw features; the paper configs).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.checkpoint import normalise_music
from engine.clock import FRAMES_PER_TOKEN
from engine.models.gpt import CrossCondGPT
from training.config import TrainConfig
from training.data.cache import save_npz_atomic
from training.data.sources import load_windows
from training.data.styles import STYLES, style_index
from training.errors import ConfigError
from training.trainer import CHECKPOINT_NAME

from .common import (
    StageBase,
    add_stage_arguments,
    clip_music_tokens,
    file_digest,
    gather_windows,
    is_main_process,
    poses_and_root_velocity,
    run_stage_cli,
    sample_indices,
    style_weights,
    vqvae_from_run,
)

CODES_FILE = "gpt_codes.npz"
MUSIC_STD_FLOOR = 1e-3  # constant columns (e.g. zeroed rhythm columns) are left unscaled, not blown up


def music_statistics(music: np.ndarray, weights: np.ndarray | None = None) -> tuple[list[float], list[float]]:
    """Per-column mean and std (floored at MUSIC_STD_FLOOR) of (..., C) music features, each row
    weighted by ``weights`` (how many training windows read it; None: once each)."""
    flat = np.asarray(music, dtype=np.float64).reshape(-1, music.shape[-1])  # (N*T, C)
    w = np.ones(flat.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = (w[:, None] * flat).sum(axis=0) / w.sum()
    std = np.maximum(np.sqrt((w[:, None] * (flat - mean) ** 2).sum(axis=0) / w.sum()), MUSIC_STD_FLOOR)
    return [float(v) for v in mean], [float(v) for v in std]


def encode_windows(vqvae, windows, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Codes of every window: (N, T/8) up and down, int64."""
    ups, downs = [], []
    for first in range(0, len(windows), batch_size):
        idx = np.arange(first, min(first + batch_size, len(windows)))
        pose, _ = poses_and_root_velocity(gather_windows(windows, idx))
        up, down = vqvae.encode(torch.from_numpy(pose))
        ups.append(up.numpy())
        downs.append(down.numpy())
    empty = np.zeros((0, windows.length // FRAMES_PER_TOKEN), dtype=np.int64)
    return (np.concatenate(ups) if ups else empty), (np.concatenate(downs) if downs else empty)


def window_music_rows(windows, clip_tokens: list[int]) -> np.ndarray:
    """(N,) row of each window's first token in the clips' music stacked in clip order."""
    offsets = np.concatenate([[0], np.cumsum(clip_tokens)[:-1]]).astype(np.int64)
    return offsets[windows.index[:, 0]] + windows.index[:, 1] // FRAMES_PER_TOKEN


def most_common_first_pair(codes_up: np.ndarray, codes_down: np.ndarray) -> list[int]:
    """The (up, down) pair most windows (N, T) start with (the smallest pair among ties)."""
    pairs, counts = np.unique(np.stack([codes_up[:, 0], codes_down[:, 0]], 1), axis=0, return_counts=True)
    return [int(v) for v in pairs[counts.argmax()]]


class GPTStage(StageBase):
    name = "gpt"

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        if not cfg.init.vqvae_run:
            raise ConfigError("the gpt stage needs init.vqvae_run (the 'root' run folder, or a 'vqvae' run)")
        if cfg.data.stride % FRAMES_PER_TOKEN:
            raise ConfigError(f"data.stride must be a multiple of {FRAMES_PER_TOKEN} frames for the gpt stage")
        if cfg.data.window // FRAMES_PER_TOKEN != cfg.gpt.block_size + 1:
            raise ConfigError(f"data.window must be (gpt.block_size + 1) x 8 = {(cfg.gpt.block_size + 1) * 8}")
        self.cfg = cfg
        vqvae = vqvae_from_run(cfg.init.vqvae_run)
        for name, size in (("up", cfg.gpt.vocab_size_up), ("down", cfg.gpt.vocab_size_down)):
            if size != vqvae.config.l_bins:
                raise ConfigError(f"gpt.vocab_size_{name} ({size}) must equal the codebook size "
                                  f"({vqvae.config.l_bins}) of {cfg.init.vqvae_run}")
        windows, _, _ = load_windows(cfg.data)
        self.num_windows = len(windows)
        n_tokens = cfg.data.window // FRAMES_PER_TOKEN
        # the cache is valid for this VQ-VAE checkpoint, these windows and this music
        key = hashlib.sha256(windows.index.tobytes()).hexdigest()[:16]
        key += "|" + file_digest(Path(cfg.init.vqvae_run) / CHECKPOINT_NAME) + f"|{cfg.music.mode}"
        key += "|" + "|".join(f"{c.name}:{c.num_frames}" for c in windows.clips)
        cache = run_dir / CODES_FILE
        cached = None
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                if str(z["key"]) == key and z["up"].shape[0] == len(windows):
                    cached = {k: z[k] for k in ("up", "down", "music")}
        if cached is None:
            up, down = encode_windows(vqvae, windows)
            # music per clip token, stacked (a window reads 30 rows from its first token on): stride-8
            # windows of ~100 minutes of motion would hold 2.5 GB of music as copies per window
            music = np.concatenate([clip_music_tokens(c, cfg) for c in windows.clips])  # (sum tokens, 438)
            cached = {"up": up, "down": down, "music": music}
            if is_main_process():
                save_npz_atomic(cache, {"key": np.array(key), **cached})
        self.codes_up = torch.from_numpy(cached["up"]).long()  # (N, 30)
        self.codes_down = torch.from_numpy(cached["down"]).long()
        self.music_rows = torch.from_numpy(window_music_rows(windows, [c.num_frames // FRAMES_PER_TOKEN
                                                                       for c in windows.clips]))  # (N,)
        self.n_tokens = n_tokens
        # standardised music (default): the statistics go into the exported model's config; without
        # (music.normalise false, the official recipe) None, and the engine feeds the raw features.
        # The statistics are those of the windows' rows (a row counts once per window that reads it).
        self.music_mean: list[float] | None = None
        self.music_std: list[float] | None = None
        window_rows = self.music_rows[:, None] + torch.arange(n_tokens)  # (N, 30)
        if cfg.music.normalise:
            counts = np.bincount(window_rows.flatten().numpy(), minlength=cached["music"].shape[0])
            self.music_mean, self.music_std = music_statistics(cached["music"], counts)
        self.music = normalise_music(torch.from_numpy(cached["music"]).float(), self.music_mean, self.music_std)
        # each window's style (0 = any, 1.. = training.data.styles.STYLES); only a style-aware GPT reads it
        self.styles = torch.tensor([style_index(s) for s in windows.styles()], dtype=torch.long)  # (N,)
        self.style_counts = {name: int((self.styles == i + 1).sum()) for i, name in enumerate(STYLES)}
        if not 0 <= cfg.data.style_balance <= 1:
            raise ConfigError(f"data.style_balance must be within 0..1, got {cfg.data.style_balance}")
        self.window_weights = style_weights(self.styles, cfg.data.style_balance)
        if cfg.gpt.n_styles and cfg.gpt.n_styles != len(STYLES):
            raise ConfigError(f"gpt.n_styles must be 0 (no style input) or {len(STYLES)} (the styles "
                              f"{', '.join(STYLES)}), got {cfg.gpt.n_styles}")
        # the most common first code pair: the exported model's default start
        self.default_start = most_common_first_pair(cached["up"], cached["down"]) if len(cached["up"]) else [0, 0]
        # and each style's, so that a dance asked for a style starts in its stance
        self.style_starts: dict[str, list[int]] = {}
        for i, name in enumerate(STYLES) if cfg.gpt.n_styles else ():
            mine = (self.styles == i + 1).numpy()
            if mine.any():
                self.style_starts[name] = most_common_first_pair(cached["up"][mine], cached["down"][mine])

    def effective(self) -> dict[str, Any]:
        return {"gpt": self.cfg.gpt.to_dict(), "vqvae_run": self.cfg.init.vqvae_run,
                "default_start": self.default_start, "train_windows": self.num_windows,
                "feature_mode": self.cfg.music.mode,
                "music_mean": self.music_mean, "music_std": self.music_std,
                "styles": list(STYLES) if self.cfg.gpt.n_styles else [],
                "style_windows": self.style_counts, "style_starts": self.style_starts}

    def build(self, device: torch.device) -> nn.Module:
        return CrossCondGPT(self.cfg.gpt).to(device)



    def batch(self, step: int, generator: torch.Generator, device: torch.device):
        idx = torch.from_numpy(sample_indices(self.num_windows, self.cfg.batch_size, generator, self.window_weights))
        rows = self.music_rows[idx, None] + torch.arange(self.n_tokens)  # (B, 30)
        style = self.styles[idx]
        if self.cfg.gpt.style_pdrop > 0:  # "any" for a share of the windows (classifier-free style)
            dropped = torch.rand(len(idx), generator=generator) < self.cfg.gpt.style_pdrop
            style = torch.where(dropped, torch.zeros_like(style), style)
        if not self.cfg.gpt.n_styles:
            style = None
        return (self.codes_up[idx].to(device), self.codes_down[idx].to(device), self.music[rows].to(device),
                None if style is None else style.to(device))

    def loss(self, model: nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        up, down, music, style = batch  # (B, 30), (B, 30), (B, 30, 438), (B,) or None
        logits_up, logits_down = model(up[:, :-1], down[:, :-1], music[:, 1:], style=style)  # (B, 29, V)
        ce_up = F.cross_entropy(logits_up.flatten(0, 1).float(), up[:, 1:].flatten())
        ce_down = F.cross_entropy(logits_down.flatten(0, 1).float(), down[:, 1:].flatten())
        with torch.no_grad():
            acc_up = (logits_up.argmax(-1) == up[:, 1:]).float().mean()
            acc_down = (logits_down.argmax(-1) == down[:, 1:]).float().mean()
        return ce_up + ce_down, {"ce_up": float(ce_up.detach()), "ce_down": float(ce_down.detach()),
                                 "acc_up": float(acc_up), "acc_down": float(acc_down)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_cli(args, "gpt", GPTStage)
