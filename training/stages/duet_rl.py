"""The duet's optional RL phase: the follower's feet made to agree with where it places itself.

``python -m training duet-rl --config training/configs/default_duet_rl.yaml``

After Duolando's off-policy stage, on leaders the follower never danced with: the solo takes of
``data`` (its training split only; held-out takes, and the duet run's held-out couples, never), each
with its music as the solo stages hear it (``clip_music_tokens``: its song, or the accompaniment on its
beats). Every step, ``batch_size`` episodes of ``duet_rl.episode_tokens`` steps are sampled from the
current follower (``engine.duet.sample_follower`` at ``duet_rl.temperature``, from the engine's start)
around random stretches of those leaders, ``duet_rl.group`` episodes (seeds) per stretch. The reward is the only thing the phase optimises and it never
looks at the test measures: per step, minus how far (cm) the follower is moved on the floor by its
placement rather than by its own steps (``engine.duet.placement_drift``: the drift between where its
decoded steps take its pelvis and where its relative-position codes put it, as the engine places it;
what the feet would slide by). Action k (its up, down and place codes) is credited with
sum_j decay^|j - k| x reward_j (the drift is smoothed over 0.4 s, so a code changes the slide of its
neighbours on both sides), baselined by the mean of its group at each step (a fast leader makes every
follower slide more: only what the follower chose should count) and scaled to unit spread (REINFORCE); plus ``kl_weight`` x KL(the duet run's follower || policy) per action, so it keeps the
partner it learnt. Dropout is off (the policy is the sampler's).

Episodes are drawn from the current weights and a per-step seed, so a resumed run continues exactly.
``python -m training add-follower --run <this run> --model DIR`` puts the result into the model folder.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.checkpoint import load_model
from engine.clock import FRAMES_PER_TOKEN, MOTION_FPS
from engine.duet import dance_codes, decode_follower, placement_drift, sample_follower, start_place
from engine.models.follower import FollowerConfig, FollowerGPT
from engine.sampling import SamplingOptions
from training.config import TrainConfig
from training.data.sources import load_split
from training.errors import ConfigError, TrainingError
from training.trainer import unwrap

from .common import (
    StageBase,
    add_stage_arguments,
    clip_music_tokens,
    kl_divergence,
    read_run,
    run_stage_cli,
    same_codes,
)


def credit_matrix(n: int, decay: float) -> np.ndarray:
    """(n, n) W with W[j, k] = decay^|j - k|: action k's credit is sum_j reward_j W[j, k]."""
    steps = np.arange(n)
    return decay ** np.abs(steps[:, None] - steps[None, :]).astype(np.float64)


def slide_per_step(drift: np.ndarray, n_steps: int) -> np.ndarray:
    """(n_steps,) metres the placement moves the follower over each step (8 frames) of ``drift`` (T, 2):
    step k covers the moves from frame 8k - 1 to 8k + 7 (step 0 from frame 0)."""
    moves = np.zeros(len(drift))
    moves[1:] = np.linalg.norm(np.diff(drift, axis=0), axis=1)
    return moves[: n_steps * FRAMES_PER_TOKEN].reshape(n_steps, FRAMES_PER_TOKEN).sum(axis=1)


class DuetRLStage(StageBase):
    name = "duet-rl"

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        if not cfg.init.duet_run:
            raise ConfigError("the duet-rl stage needs init.duet_run (a 'duet' run folder: the follower to fine-tune)")
        self.cfg = cfg
        state = read_run(cfg.init.duet_run, ("duet",))
        self.duet_effective = effective = state["config"]["effective"]
        self.follower_config = FollowerConfig(**effective["follower"])
        self.follower_weights, self.duet_step = state["model"], int(state["step"])
        self.model_dir = effective["model_dir"]
        rl = cfg.duet_rl
        if rl.episode_tokens > self.follower_config.block_size + 1:
            raise ConfigError(f"duet_rl.episode_tokens ({rl.episode_tokens}) must fit one window: at most "
                              f"follower.block_size + 1 = {self.follower_config.block_size + 1}")
        model = load_model(self.model_dir)
        if not same_codes(effective, self.model_dir, model.vqvae):
            raise ConfigError(f"the VQ-VAE in {self.model_dir} does not give the codes {cfg.init.duet_run} was "
                              "trained on")
        self.vqvae = model.vqvae.eval()
        self.start = (*model.config.start_for("any"), start_place())
        split = load_split(cfg.data)
        held = set(effective.get("held_out", []))  # the duet run's held-out couples
        leaders = [c for c in split.train if c.take_id not in held]
        if not leaders:
            raise ConfigError("duet-rl: data gives no training takes to lead the follower")
        self.leaders: list[dict[str, np.ndarray]] = []
        for clip in leaders:
            if clip.fps != MOTION_FPS:
                raise TrainingError(f"{clip.name}: leaders must be at {MOTION_FPS:g} fps, got {clip.fps:g}")
            n = clip.num_frames // FRAMES_PER_TOKEN
            if n < rl.episode_tokens:
                continue
            up, down = dance_codes(self.vqvae, clip.joints)
            music = model.config.normalise_music(torch.from_numpy(clip_music_tokens(clip, cfg))).numpy()
            self.leaders.append({"joints": clip.joints[: n * FRAMES_PER_TOKEN], "up": up, "down": down,
                                 "music": music[:n], "name": np.array(clip.name)})
        if not self.leaders:
            raise ConfigError(f"duet-rl: no leader take is {rl.episode_tokens} steps long")
        self.held_out = sorted(held | {c.take_id for c in split.val})
        tokens = np.array([len(d["up"]) - rl.episode_tokens + 1 for d in self.leaders], dtype=np.float64)
        self.take_weights = torch.as_tensor(tokens / tokens.sum())  # every episode start equally likely
        self.num_windows = int(tokens.sum())
        self.model: FollowerGPT | None = None

    def effective(self) -> dict[str, Any]:
        # what add-follower and the engine need, as a duet run records it, plus where it came from
        keep = ("follower", "model_dir", "vqvae_digest", "codes_digest", "relative_position_grid", "music")
        return {**{k: self.duet_effective[k] for k in keep if k in self.duet_effective},
                "duet_run": self.cfg.init.duet_run, "duet_step": self.duet_step, "held_out": self.held_out,
                "leaders": [str(d["name"]) for d in self.leaders], "episode_starts": self.num_windows}

    def build(self, device: torch.device) -> nn.Module:
        follower = FollowerGPT(self.follower_config)
        follower.load_state_dict(self.follower_weights, strict=True)
        self.model = follower.to(device)
        self.reference: FollowerGPT | None = None
        if self.cfg.duet_rl.kl_weight > 0:  # the follower before this phase, frozen, for the KL anchor
            self.reference = copy.deepcopy(follower).eval().requires_grad_(False)
        self.vqvae.to(device)
        return self.model

    # --- episodes -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def batch(self, step: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        """``batch_size`` episodes sampled from the current policy, with their conditions, rewards and where
        they come from (``episode``: leader index, first step)."""
        assert self.model is not None
        rl, L, E = self.cfg.duet_rl, self.follower_config.lookahead, self.cfg.duet_rl.episode_tokens
        policy = unwrap(self.model)
        groups = self.cfg.batch_size // rl.group
        takes = torch.multinomial(self.take_weights, groups, replacement=True, generator=generator)
        hold = np.minimum(np.arange(E + L), E - 1)  # the episode's last step held past its end, as at inference
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("up", "down", "rel", "lead_up", "lead_down", "music",
                                                            "slide", "episode")}
        stretches = [(take, int(torch.randint(len(self.leaders[take]["up"]) - E + 1, (1,), generator=generator)))
                     for take in takes.tolist()]
        for take, first in (s for s in stretches for _ in range(rl.group)):  # group after group
            leader = self.leaders[take]
            steps = slice(first, first + E)
            lead_up, lead_down, music = leader["up"][steps], leader["down"][steps], leader["music"][steps]
            options = SamplingOptions(greedy=False, temperature=rl.temperature,
                                      seed=int(torch.randint(2**31 - 1, (1,), generator=generator)))
            up, down, rel = sample_follower(policy, lead_up, lead_down, torch.from_numpy(music), self.start, options)
            joints = leader["joints"][first * FRAMES_PER_TOKEN : (first + E) * FRAMES_PER_TOKEN]
            drift = placement_drift(decode_follower(self.vqvae, up, down), rel, joints)
            for key, value in (("up", up), ("down", down), ("rel", rel), ("lead_up", lead_up[hold]),
                               ("lead_down", lead_down[hold]), ("music", music[hold]),
                               ("slide", slide_per_step(drift, E)), ("episode", np.array([take, first]))):
                rows[key].append(value)
        out = {k: torch.as_tensor(np.stack(v), device=device) for k, v in rows.items()}
        out["music"] = out["music"].float()
        out["reward"] = -100.0 * out.pop("slide")[:, 1:].float()  # (B, E - 1) cm, for actions 1..E-1
        return out

    # --- loss ---------------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        model.eval()  # no dropout: the policy whose log-probabilities count is the sampler's
        rl = self.cfg.duet_rl
        up, down, rel = batch["up"], batch["down"], batch["rel"]
        inputs = (up[:, :-1], down[:, :-1], rel[:, :-1], batch["lead_up"][:, 1:], batch["lead_down"][:, 1:],
                  batch["music"][:, 1:])
        logits = model(*inputs)  # 3 x (B, E - 1, V)
        actions = (up[:, 1:], down[:, 1:], rel[:, 1:])
        log_p = sum(torch.gather(F.log_softmax(lg.float() / rl.temperature, dim=-1), -1, a[..., None])[..., 0]
                    for lg, a in zip(logits, actions))  # (B, E - 1)
        reward = batch["reward"]
        credit = reward.double() @ torch.as_tensor(credit_matrix(reward.shape[1], rl.credit_decay),
                                                   device=reward.device)
        grouped = credit.view(-1, rl.group, credit.shape[1])  # (stretches, group, E - 1)
        advantage = (grouped - grouped.mean(dim=1, keepdim=True)).view_as(credit)
        advantage = (advantage / (advantage.std() + 1e-6)).float()
        loss = -(advantage * log_p).mean()
        logs = {"pg": float(loss.detach()), "reward": float(reward.mean()), "slide_cm": float(-reward.mean())}
        if self.reference is not None:
            with torch.no_grad():
                reference = self.reference(*inputs)
            kl = sum(kl_divergence(r, lg) for r, lg in zip(reference, logits))  # (B, E - 1)
            loss = loss + rl.kl_weight * kl.mean()
            logs["kl"] = float(kl.mean().detach())
        return loss, logs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_cli(args, "duet-rl", DuetRLStage)
