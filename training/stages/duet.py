"""The duet's follower GPT (engine.models.follower) on the real salsa couples.

``python -m training duet --config training/configs/default_duet.yaml``

Every training couple (training.data.duet; held-out takes never loaded into training) and its mirror
image and turned copies is encoded once: both dancers' whole takes through the frozen VQ-VAE of
``init.model_dir`` (the default model's, trained on both dancers), the follower's place around the
leader per token (``engine.relative_position.DEFAULT_GRID``, at each token's middle frame), and the
music: accompaniment synthesised on the leader's motion beats (no music was recorded), scaled as the
model scales music, or zeros with ``duet.music: false``. The codes are cached in the run folder.

A training window of ``follower.block_size`` steps starting at token s reads the follower's codes
s .. s + block, and the condition (music and leader codes) of steps s + 1 .. s + block + lookahead,
the end of a take held (its last token repeated), as at inference. Loss CE(up) + CE(down) + CE(rel).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.checkpoint import load_model
from engine.clock import FRAMES_PER_TOKEN
from engine.duet import dance_codes
from engine.models.follower import FollowerGPT, follower_loss
from engine.relative_position import DEFAULT_GRID
from training.config import TrainConfig
from training.data.cache import save_npz_atomic
from training.data.clip import MotionClip
from training.data.duet import DuetClip, load_duets, mirror_duet, rotate_duet, split_duets
from training.errors import ConfigError

from .common import (
    StageBase,
    add_stage_arguments,
    clip_music_tokens,
    is_main_process,
    run_stage_cli,
)

CODES_FILE = "duet_codes.npz"
STREAMS = ("leader_up", "leader_down", "up", "down", "rel", "music")


def couples_for_training(cfg: TrainConfig) -> tuple[list[DuetClip], list[str], list[DuetClip]]:
    """(training couples with their copies, the held-out take ids, the validation couples as captured)."""
    train, held = split_duets(load_duets(cfg.duet.duet_dir), cfg.duet.held_out)
    unknown = set(cfg.duet.validation) - {d.take_id for d in train}
    if unknown:
        raise ConfigError(f"duet.validation names takes that are not training couples: {sorted(unknown)} "
                          "(a held-out take may not be used, not even to validate)")
    train, validation = split_duets(train, cfg.duet.validation)
    if not train:
        raise ConfigError("duet.validation leaves no couple to train on")
    couples = list(train)
    couples += [rotate_duet(d, angle) for d in train for angle in cfg.duet.rotations_deg]
    if cfg.duet.mirror:
        couples += [mirror_duet(d) for d in couples]
    return couples, [d.take_id for d in held], validation


def encode_couple(vqvae: nn.Module, duet: DuetClip) -> dict[str, np.ndarray]:
    """Per token of a couple (whole tokens only): both dancers' codes, encoded as the engine encodes a
    leader at inference (``engine.duet.dance_codes``), and the follower's place code."""
    codes = {}
    codes["leader_up"], codes["leader_down"] = dance_codes(vqvae, duet.leader)
    codes["up"], codes["down"] = dance_codes(vqvae, duet.follower)
    n = len(codes["up"])
    middle = np.arange(n) * FRAMES_PER_TOKEN + FRAMES_PER_TOKEN // 2
    codes["rel"] = DEFAULT_GRID.encode(duet.leader[middle], duet.follower[middle])
    return codes


def couple_music(duet: DuetClip, cfg: TrainConfig, n_tokens: int, normalise) -> np.ndarray:
    """(n_tokens, 438) music per token: the accompaniment of the leader's motion (as a solo clip without
    a song gets it, ``clip_music_tokens``), scaled; or zeros."""
    if not cfg.duet.music:
        return np.zeros((n_tokens, 438), dtype=np.float32)
    leader = MotionClip(joints=duet.leader, name=duet.name, take_id=duet.take_id, source="duet")
    feats = clip_music_tokens(leader, cfg)[:n_tokens]
    return normalise(torch.from_numpy(feats)).numpy()


class DuetStage(StageBase):
    name = "duet"

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        if not cfg.init.model_dir:
            raise ConfigError("the duet stage needs init.model_dir (an engine model folder: its VQ-VAE and "
                              "music scaling, e.g. assets/default_model)")
        self.cfg = cfg
        model = load_model(cfg.init.model_dir)
        self.codes_digest = model.vqvae.codes_digest()
        vq = model.config.vqvae
        for name, size in (("up", cfg.follower.vocab_size_up), ("down", cfg.follower.vocab_size_down)):
            if size != vq.l_bins:
                raise ConfigError(f"follower.vocab_size_{name} ({size}) must equal the codebook size ({vq.l_bins}) "
                                  f"of {cfg.init.model_dir}")
        if cfg.follower.n_relpos != DEFAULT_GRID.size:
            raise ConfigError(f"follower.n_relpos must be {DEFAULT_GRID.size} (engine.relative_position)")
        if model.config.feature_mode != cfg.music.mode:
            raise ConfigError(f"music.mode ({cfg.music.mode}) must be the model's feature mode "
                              f"({model.config.feature_mode})")
        couples, self.held_out, validation = couples_for_training(cfg)
        key = hashlib.sha256(json.dumps([[d.name, d.num_frames, float(d.leader.sum()), float(d.follower.sum())]
                                         for d in couples]).encode()).hexdigest()[:16]
        key += f"|{Path(cfg.init.model_dir).resolve()}|music={cfg.duet.music}|{cfg.music.mode}"
        cache = run_dir / CODES_FILE
        cached = None
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    cached = {k: z[k] for k in (*STREAMS, "take_tokens")}
        if cached is None:
            parts = []
            music_of: dict[str, np.ndarray] = {}  # a take's copies dance to the same beats
            for duet in couples:
                codes = encode_couple(model.vqvae, duet)
                n = len(codes["up"])
                if duet.take_id not in music_of:
                    music_of[duet.take_id] = couple_music(duet, cfg, n, model.config.normalise_music)
                codes["music"] = music_of[duet.take_id][:n]
                parts.append(codes)
            cached = {k: np.concatenate([p[k] for p in parts]) for k in STREAMS}
            cached["take_tokens"] = np.array([len(p["up"]) for p in parts], dtype=np.int64)
            if is_main_process():
                save_npz_atomic(cache, {"key": np.array(key), **cached})
        self.streams = {k: torch.from_numpy(np.asarray(cached[k])) for k in STREAMS}
        self.streams["music"] = self.streams["music"].float()
        # window starts: every token of every take from which block + 1 follower tokens exist
        block, tokens = cfg.follower.block_size, cached["take_tokens"]
        firsts = np.concatenate([[0], np.cumsum(tokens)[:-1]])
        self.take_last = np.repeat(firsts + tokens - 1, tokens)  # (total,) each token's take's last token
        self.starts = np.concatenate([f + np.arange(max(0, n - block)) for f, n in zip(firsts, tokens)])
        if not len(self.starts):
            raise ConfigError(f"no duet take is longer than follower.block_size + 1 = {block + 1} tokens")
        self.num_windows = len(self.starts)
        self.num_couples = len(couples)
        # validation: every window of each validation couple (as captured), encoded as the training ones
        self.validation = [d.take_id for d in validation]
        self.val_windows: tuple[torch.Tensor, ...] | None = None
        if validation:
            per_couple = []
            for duet in validation:
                codes = encode_couple(model.vqvae, duet)
                codes["music"] = couple_music(duet, cfg, len(codes["up"]), model.config.normalise_music)
                streams = {k: torch.from_numpy(np.asarray(v)) for k, v in codes.items()}
                streams["music"] = streams["music"].float()
                per_couple.append(self._windows(streams, np.arange(max(0, len(streams["up"]) - block))))
            self.val_windows = tuple(torch.cat(parts) for parts in zip(*per_couple))

    def effective(self) -> dict[str, Any]:
        return {"follower": self.cfg.follower.to_dict(), "model_dir": self.cfg.init.model_dir,
                "codes_digest": self.codes_digest,
                "held_out": self.held_out, "validation": self.validation, "couples": self.num_couples,
                "train_windows": self.num_windows,
                "relative_position_grid": {"radii": list(DEFAULT_GRID.radii), "bearings": DEFAULT_GRID.bearings},
                "music": self.cfg.duet.music}

    def build(self, device: torch.device) -> nn.Module:
        return FollowerGPT(self.cfg.follower).to(device)

    def _windows(self, streams: dict[str, torch.Tensor], starts: np.ndarray,
                 take_last: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
        """Windows of ``streams`` (one take, or takes stacked with each token's take's last token in
        ``take_last``) from token ``starts``: (up, down, rel) (W, block + 1) and the conditions (leader up,
        leader down, music) (W, block + L), the end of a take held. Music is float32 in ``streams``."""
        block, ahead = self.cfg.follower.block_size, self.cfg.follower.lookahead
        own = starts[:, None] + np.arange(block + 1)  # (W, block + 1) follower tokens
        cond = starts[:, None] + 1 + np.arange(block + ahead)  # (W, block + L) conditions
        last = np.full(len(starts), len(streams["up"]) - 1) if take_last is None else take_last[starts]
        cond = np.minimum(cond, last[:, None])
        s = streams
        return (s["up"][own], s["down"][own], s["rel"][own], s["leader_up"][cond], s["leader_down"][cond],
                s["music"][cond])

    def batch(self, step: int, generator: torch.Generator, device: torch.device):
        pick = torch.randint(0, self.num_windows, (self.cfg.batch_size,), generator=generator).numpy()
        return tuple(x.to(device) for x in self._windows(self.streams, self.starts[pick], self.take_last))

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Cross-entropy (up, down, rel and their sum) over every window of the validation couples."""
        if self.val_windows is None:
            return {}
        device = next(model.parameters()).device
        totals = {"up": 0.0, "down": 0.0, "rel": 0.0}
        n = len(self.val_windows[0])
        for first in range(0, n, 64):
            up, down, rel, leader_up, leader_down, music = (t[first : first + 64].to(device) for t in self.val_windows)
            _, parts = follower_loss(model(up[:, :-1], down[:, :-1], rel[:, :-1], leader_up, leader_down, music),
                                     (up[:, 1:], down[:, 1:], rel[:, 1:]))
            for k in totals:
                totals[k] += parts[k] * len(up)
        out = {f"val_ce_{k}": v / n for k, v in totals.items()}
        out["val_ce"] = sum(out.values())
        return out

    def loss(self, model: nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        up, down, rel, leader_up, leader_down, music = batch
        logits = model(up[:, :-1], down[:, :-1], rel[:, :-1], leader_up, leader_down, music)  # (B, block, V)
        loss, parts = follower_loss(logits, (up[:, 1:], down[:, 1:], rel[:, 1:]))
        return loss, {f"ce_{k}": v for k, v in parts.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_cli(args, "duet", DuetStage)
