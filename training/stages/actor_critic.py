"""Actor-critic fine-tuning of the GPT with the beat-align reward (docs/REFERENCE.md §4).

``python -m training actor-critic --config training/configs/paper_actor_critic.yaml``

* Model: the GPT of ``init.gpt_run`` plus a critic head (``critic_net``, value = value_up + value_down).
  ``gpt_base`` is frozen and every dropout is off (the whole model runs in eval mode); only
  ``gpt_head`` (the actor) and ``critic_net`` learn.
* ``tune: styles`` (ours): instead of the head, only the style embedding's rows of the rollout styles
  learn, so every other style (and "any") dances exactly as before.
* On-policy rollouts: every ``rollout_every`` steps the current policy dances to each song of
  ``actor_critic.songs`` from ``start_codes``, greedy as the official code does, or (ours)
  ``rollouts_per_song`` dances sampled at ``rollout_temperature``: a policy gradient needs actions drawn
  from the policy; with greedy rollouts a negative advantage only pushes the argmax token down, in no
  particular direction. ``rollout_max_repeat`` (ours) decodes them with the engine's repeat limit,
  so the reward is paid on the dances users get rather than on stuck repeats. The dances are cut into
  every 30-token window (stride 1).
  The first window of a song counts all its 28 actions, later windows only their last one, so each
  action is counted once.
* Styles (ours): the rollouts dance in each of ``rollout_styles`` ("any" by default), from the GPT
  run's start for that style, steered with ``rollout_style_guidance`` as the engine steers a style
  (logits = any + g (style - any)); the actor's probabilities, the KL anchor and the critic read the
  same style, so the policy is fine-tuned on the dances users ask for.
* Reward per token (``training.stages.rewards``): beat-align in the released or the paper form, plus
  ``half_body_rate`` x half-body consistency, plus ``speed_reward`` x the speed reward (ours) against
  the mean joint speed of the rollout style's training takes (the GPT run's data, as choose-start
  measures it), for the rollouts of ``speed_styles`` (all by default); the motion comes from decoding the window's codes 1..28 with the frozen VQ-VAE, the
  music beats from the song's 60 fps beat column.
* Optional anchor (``kl_weight`` > 0, ours): the actor loss adds kl_weight x KL(p_0 || p) per token,
  p_0 being the GPT before fine-tuning (a frozen copy), so that the few songs' rewards adjust the
  timing of the dance without unlearning the motion the GPT stage learnt (RLHF-style regularisation).
* Critic: V over codes 0..28 with music 1..29; delta = r + gamma V[1:] - V[:-1]; loss mean(delta^2).
  Actor: per-token CE of codes 1..28 given codes 0..27 and music 1..28, weighted by sg(delta) and the
  action mask. Steps alternate: ``actor_iters`` actor steps, then ``critic_iters`` critic steps.

The rollouts are saved in the run folder, so a resumed run continues on the same dances.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.audio import AUDIO_EXTENSIONS, extract_features
from engine.checkpoint import ANY_STYLE, normalise_music
from engine.clock import FRAMES_PER_TOKEN, MOTION_FPS
from engine.models.gpt import CrossCondGPT
from engine.models.vqvae import integrate_root
from engine.sampling import SamplingOptions, guide, sample_codes
from training.config import TrainConfig
from training.data.cache import save_npz_atomic
from training.data.sources import load_split
from training.errors import ConfigError, TrainingError
from training.metrics.physical import mean_joint_speed, style_speed

from .common import (
    StageBase,
    add_stage_arguments,
    is_main_process,
    kl_divergence,
    read_run,
    run_stage_cli,
    vqvae_from_run,
)
from .rewards import token_rewards

ROLLOUT_FILE = "rollouts.npz"


class ActorCritic(nn.Module):
    """The GPT with a critic; ``forward(kind, ...)`` so that DDP sees both actor and critic passes."""

    def __init__(self, gpt: CrossCondGPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, kind: str, codes_up: torch.Tensor, codes_down: torch.Tensor, music: torch.Tensor,
                style: torch.Tensor | None = None):
        if kind == "actor":
            return self.gpt(codes_up, codes_down, music, style=style)
        value_up, value_down = self.gpt.values(codes_up, codes_down, music, style=style)
        return (value_up + value_down)[..., 0]  # (B, t)


def guided_logits(policy, codes_up: torch.Tensor, codes_down: torch.Tensor, music: torch.Tensor,
                  style: torch.Tensor, guidance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits the rollouts were sampled from: any + guidance x (style - any) on the rows with a
    style (the engine's classifier-free guidance), the model's own on the "any" rows. ``policy(up, down,
    music, style)`` returns (logits_up, logits_down) (B, t, V)."""
    own_up, own_down = policy(codes_up, codes_down, music, style)
    styled = style != 0
    if guidance == 1.0 or not bool(styled.any()):
        return own_up, own_down
    any_up, any_down = policy(codes_up, codes_down, music, torch.zeros_like(style))
    w = torch.where(styled, guidance, 1.0).to(own_up.dtype)[:, None, None]  # (B, 1, 1)
    return guide(any_up, own_up, w), guide(any_down, own_down, w)


def find_songs(entries: list[str]) -> list[Path]:
    songs: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            songs += sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.is_file():
            songs.append(path)
        else:
            raise ConfigError(f"actor_critic.songs: {path} does not exist")
    if not songs:
        raise ConfigError("actor_critic.songs names no audio files (give song files or folders of them)")
    return songs


class ActorCriticStage(StageBase):
    # actor steps leave the critic without gradients and critic steps the actor
    ddp_options = {"find_unused_parameters": True}
    name = "actor-critic"

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        ac = cfg.actor_critic
        if not cfg.init.gpt_run:
            raise ConfigError("the actor-critic stage needs init.gpt_run (the 'gpt' run folder)")
        self.cfg, self.run_dir = cfg, run_dir
        gpt_state = read_run(cfg.init.gpt_run, ("gpt",))
        effective = gpt_state["config"]["effective"]
        self.vqvae_run = cfg.init.vqvae_run or effective["vqvae_run"]
        self.vqvae = vqvae_from_run(self.vqvae_run)
        base_config = type(cfg.gpt)(**effective["gpt"])
        n_critic = cfg.gpt.n_layer_critic or 3
        self.gpt_config = replace(base_config, n_layer_critic=n_critic)
        self.gpt_weights = gpt_state["model"]
        start = ac.start_codes if ac.start_codes is not None else effective.get("default_start", (0, 0))
        self.start_codes = (int(start[0]), int(start[1]))
        if not (0 <= self.start_codes[0] < base_config.vocab_size_up and
                0 <= self.start_codes[1] < base_config.vocab_size_down):
            raise ConfigError(f"actor_critic.start_codes {self.start_codes} are outside the codebooks")
        self.feature_mode = effective.get("feature_mode", cfg.music.mode)
        # the GPT run's music statistics (None for older runs: raw features), kept for the export
        self.music_mean = effective.get("music_mean")
        self.music_std = effective.get("music_std")
        self.styles = effective.get("styles", [])
        self.style_starts = effective.get("style_starts", {})
        # the rollouts' styles: (name, the GPT's style input, start codes)
        self.rollout_styles: list[tuple[str, int, tuple[int, int]]] = []
        for name in ac.rollout_styles:
            if name == ANY_STYLE:
                self.rollout_styles.append((name, 0, self.start_codes))
            elif name in self.styles:
                start = self.style_starts.get(name, self.start_codes)
                self.rollout_styles.append((name, 1 + self.styles.index(name), (int(start[0]), int(start[1]))))
            else:
                raise ConfigError(f"actor_critic.rollout_styles: {name!r} is not a style of the gpt run "
                                  f"(it has {[ANY_STYLE, *self.styles]})")
        if ac.tune == "styles" and not any(index > 0 for _, index, _ in self.rollout_styles):
            raise ConfigError("actor_critic.tune 'styles' needs a gpt run with styles and rollout_styles naming "
                              "at least one of them (the rows that learn)")
        if ac.tune == "styles" and cfg.optim.weight_decay:
            raise ConfigError("actor_critic.tune 'styles' needs optim.weight_decay 0 (decay would move every row)")
        # the speed each rollout style aims at: its training takes' mean joint speed (as choose-start)
        self.speed_targets: dict[str, float] = {}
        if ac.speed_reward > 0:
            train_takes = load_split(gpt_state["config"]["data"]).train
            rolled = [name for name, _, _ in self.rollout_styles]
            paid = rolled if ac.speed_styles is None else ac.speed_styles
            if not set(paid) <= set(rolled):
                raise ConfigError(f"actor_critic.speed_styles {sorted(set(paid) - set(rolled))} are not among "
                                  f"the rollout styles {rolled}")
            for name in paid:
                speed = style_speed(train_takes, name)
                if speed is None:
                    raise ConfigError(f"actor_critic.speed_reward: the gpt run's data has no {name!r} takes")
                self.speed_targets[name] = speed
        self.songs = []
        for path in find_songs(ac.songs):
            song = extract_features(path, self.feature_mode, with_beats=True, cache_dir=cfg.music.feature_cache_dir)
            # standardised once here: rollouts and training batches both see what the GPT trained on
            feats = normalise_music(torch.as_tensor(song.features, dtype=torch.float32),
                                    self.music_mean, self.music_std).numpy()
            if ac.max_tokens is not None:
                feats = feats[: ac.max_tokens]
            if feats.shape[0] < base_config.block_size + 2:
                raise ConfigError(f"{path} is too short for a {base_config.block_size + 1}-token window")
            self.songs.append({"path": str(path), "music": feats, "beats": np.asarray(song.beats)})
        self.window = base_config.block_size + 1  # 30 tokens
        self.num_windows = sum(s["music"].shape[0] - self.window + 1 for s in self.songs)
        self.model: ActorCritic | None = None
        self.rollout_epoch = -1
        self.rollout_speeds: dict[str, float] = {}
        self.codes: list[tuple[np.ndarray, np.ndarray]] = []
        self.index = np.zeros((0, 2), dtype=np.int64)

    def effective(self) -> dict[str, Any]:
        return {"gpt": self.gpt_config.to_dict(), "vqvae_run": self.vqvae_run, "gpt_run": self.cfg.init.gpt_run,
                "default_start": list(self.start_codes), "feature_mode": self.feature_mode,
                "songs": [s["path"] for s in self.songs], "train_windows": self.num_windows,
                "music_mean": self.music_mean, "music_std": self.music_std,
                "styles": self.styles, "style_starts": self.style_starts,
                "rollout_styles": [name for name, _, _ in self.rollout_styles], "speed_targets": self.speed_targets}

    # --- model ------------------------------------------------------------------------------------------
    def build(self, device: torch.device) -> nn.Module:
        gpt = CrossCondGPT(self.gpt_config)
        missing, unexpected = gpt.load_state_dict(self.gpt_weights, strict=False)
        if unexpected or any(not k.startswith("critic_net.") for k in missing):
            raise TrainingError(f"the gpt run does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        if self.cfg.actor_critic.tune == "head":
            for name, p in gpt.named_parameters():
                p.requires_grad_(not name.startswith("gpt_base."))
        else:  # "styles": only the rollout styles' rows of the style embedding (and the critic) learn
            for name, p in gpt.named_parameters():
                p.requires_grad_(name == "gpt_base.style_emb.weight" or name.startswith("critic_net."))
            rows = torch.zeros(self.gpt_config.n_styles + 1, 1)
            rows[[index for _, index, _ in self.rollout_styles if index > 0]] = 1.0
            # the other rows get no gradient, so Adam (no weight decay) leaves them exactly as they were
            gpt.gpt_base.style_emb.weight.register_hook(lambda grad: grad * rows.to(grad.device))
        self.model = ActorCritic(gpt).to(device)
        self.reference: CrossCondGPT | None = None
        if self.cfg.actor_critic.kl_weight > 0:  # the policy before fine-tuning, frozen, for the KL anchor
            self.reference = copy.deepcopy(gpt).eval().requires_grad_(False)
        self.vqvae.to(device)
        return self.model



    # --- rollouts -----------------------------------------------------------------------------------------
    def _saved_rollout(self, path: Path, epoch: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            if int(z["epoch"]) != epoch or int(z["songs"]) != len(self.rollout_songs):
                return None
            styles = z["styles"] if "styles" in z else np.zeros(len(self.rollout_songs), np.int64)
            if not np.array_equal(styles, [self.rollout_styles[k][1] for k in self.rollout_style_of]):
                return None
            return [(z[f"up{i}"], z[f"down{i}"]) for i in range(len(self.rollout_songs))]

    @property
    def rollout_songs(self) -> list[int]:
        """The song of each rollout: ``rollouts_per_song`` dances to every song in every rollout style,
        song by song."""
        per_song = self.cfg.actor_critic.rollouts_per_song * len(self.rollout_styles)
        return [j for j in range(len(self.songs)) for _ in range(per_song)]

    @property
    def rollout_style_of(self) -> list[int]:
        """The place in ``rollout_styles`` of each rollout's style (parallel to ``rollout_songs``)."""
        per_style = self.cfg.actor_critic.rollouts_per_song
        return [k for _ in self.songs for k in range(len(self.rollout_styles)) for _ in range(per_style)]

    def _rollout_options(self, epoch: int, k: int, style: int = 0) -> SamplingOptions:
        ac = self.cfg.actor_critic
        fast = not ac.exact_rollout
        guidance = ac.rollout_style_guidance
        # no repeat limit by default, as the official code decodes; rollout_max_repeat decodes as the engine does
        if ac.rollout_temperature is None:
            return SamplingOptions(greedy=True, fast=fast, max_repeat=ac.rollout_max_repeat, style=style,
                                   style_guidance=guidance)
        # sampled from the policy itself (on-policy), a different seed for every rollout of every epoch
        return SamplingOptions(greedy=False, temperature=ac.rollout_temperature, seed=1000 * epoch + k, fast=fast,
                               max_repeat=ac.rollout_max_repeat, style=style, style_guidance=guidance)

    def _rollout(self, epoch: int) -> None:
        """Dance to every song with the current policy (or read this epoch's dances back on resume)."""
        path = self.run_dir / ROLLOUT_FILE
        codes = self._saved_rollout(path, epoch)
        if codes is None:
            assert self.model is not None
            gpt = self.model.gpt
            device = next(gpt.parameters()).device
            codes = []
            for k, (j, s) in enumerate(zip(self.rollout_songs, self.rollout_style_of)):
                _, style, start = self.rollout_styles[s]
                music = torch.as_tensor(self.songs[j]["music"][1:], device=device)
                codes.append(sample_codes(gpt, *start, music, self._rollout_options(epoch, k, style)))
            if is_main_process():
                arrays = {f"up{i}": u for i, (u, _) in enumerate(codes)}
                arrays.update({f"down{i}": d for i, (_, d) in enumerate(codes)})
                styles = np.array([self.rollout_styles[s][1] for s in self.rollout_style_of], dtype=np.int64)
                save_npz_atomic(path, {"epoch": np.array(epoch), "songs": np.array(len(codes)), "styles": styles,
                                       **arrays})
        self.codes = codes
        self.rollout_epoch = epoch
        # each rollout style's mean joint speed (m/s), logged at every step of the epoch: what the speed
        # reward moves
        speeds: dict[str, list[float]] = {}
        device = next(self.vqvae.parameters()).device
        with torch.no_grad():
            for (up, down), s in zip(codes, self.rollout_style_of):
                decoded = self.vqvae.decode(torch.as_tensor(up[None, 1:], device=device),
                                            torch.as_tensor(down[None, 1:], device=device))
                joints = integrate_root(decoded)[0].float().cpu().numpy()
                speeds.setdefault(self.rollout_styles[s][0], []).append(mean_joint_speed(joints, MOTION_FPS))
        self.rollout_speeds = {f"speed_{name}": float(np.mean(v)) for name, v in speeds.items()}
        # (rollout, window start) pairs
        self.index = np.array([(r, i) for r, j in enumerate(self.rollout_songs)
                               for i in range(self.songs[j]["music"].shape[0] - self.window + 1)], dtype=np.int64)

    @torch.no_grad()
    def batch(self, step: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        ac = self.cfg.actor_critic
        windows = self.num_windows * ac.rollouts_per_song
        every = ac.rollout_every or max(1, -(-windows // self.cfg.batch_size))
        epoch = step // every
        if epoch != self.rollout_epoch:
            self._rollout(epoch)
        pick = torch.randint(len(self.index), (self.cfg.batch_size,), generator=generator).numpy()
        w = self.window
        song_of = self.rollout_songs
        up = np.stack([self.codes[r][0][i : i + w] for r, i in self.index[pick]])  # (B, 30)
        down = np.stack([self.codes[r][1][i : i + w] for r, i in self.index[pick]])
        music = np.stack([self.songs[song_of[r]]["music"][i : i + w] for r, i in self.index[pick]])  # (B, 30, 438)
        n_actions = w - 2  # 28: codes 1..28 of the window
        mask = np.zeros((len(pick), n_actions), dtype=np.float32)
        mask[:, -1] = 1.0
        mask[self.index[pick][:, 1] == 0] = 1.0  # a song's first window counts all its actions

        # reward: decode codes 1..28 (224 frames) and compare with the music beats of those frames
        up_t = torch.as_tensor(up, device=device)
        down_t = torch.as_tensor(down, device=device)
        decoded = self.vqvae.decode(up_t[:, 1 : 1 + n_actions], down_t[:, 1 : 1 + n_actions])  # (B, 224, 72)
        joints = integrate_root(decoded).float().cpu().numpy()  # (B, 224, 24, 3)
        rewards = np.zeros((len(pick), n_actions), dtype=np.float32)
        style_of = self.rollout_style_of
        for b, (r, i) in enumerate(self.index[pick]):
            first = (i + 1) * FRAMES_PER_TOKEN  # frame of code 1 in the song's 60 fps clock
            beats = self.songs[song_of[r]]["beats"] - first
            target = self.speed_targets.get(self.rollout_styles[style_of[r]][0])  # None: not paid for speed
            rewards[b] = token_rewards(joints[b], beats, ac.reward, ac.half_body_rate, ac.false_beat_penalty,
                                       ac.speed_reward if target is not None else 0.0, target, ac.speed_band)
        style = np.array([self.rollout_styles[style_of[r]][1] for r, _ in self.index[pick]], dtype=np.int64)
        return {"up": up_t, "down": down_t, "music": torch.as_tensor(music, device=device),
                "mask": torch.as_tensor(mask, device=device), "reward": torch.as_tensor(rewards, device=device),
                "style": torch.as_tensor(style, device=device)}

    # --- losses -------------------------------------------------------------------------------------------
    def _delta(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        values = model("critic", batch["up"][:, :-1], batch["down"][:, :-1], batch["music"][:, 1:],
                       batch["style"])  # (B, 29)
        gamma = self.cfg.actor_critic.gamma
        return batch["reward"] + gamma * values[:, 1:] - values[:, :-1]  # (B, 28)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int):
        model.eval()  # frozen base and frozen dropouts (official freeze_drop)
        ac = self.cfg.actor_critic
        reward_mean = float((batch["reward"] * batch["mask"]).sum() / batch["mask"].sum())
        if step % (ac.actor_iters + ac.critic_iters) < ac.actor_iters:
            with torch.no_grad():
                delta = self._delta(model.module if hasattr(model, "module") else model, batch)
            up, down, music, style = batch["up"], batch["down"], batch["music"], batch["style"]
            guidance = ac.rollout_style_guidance
            logits_up, logits_down = guided_logits(lambda u, d, m, s: model("actor", u, d, m, s),
                                                   up[:, :-2], down[:, :-2], music[:, 1:-1], style, guidance)  # (B, 28, V)
            ce = (F.cross_entropy(logits_up.transpose(1, 2).float(), up[:, 1:-1], reduction="none")
                  + F.cross_entropy(logits_down.transpose(1, 2).float(), down[:, 1:-1], reduction="none"))
            mask = batch["mask"]
            loss = (ce * delta * mask).sum() / mask.sum()
            logs = {"actor": float(loss.detach()), "reward": reward_mean, "ce": float(ce.mean().detach()),
                    **self.rollout_speeds}
            if self.reference is not None:
                with torch.no_grad():
                    ref_up, ref_down = guided_logits(lambda u, d, m, s: self.reference(u, d, m, style=s),
                                                     up[:, :-2], down[:, :-2], music[:, 1:-1], style, guidance)
                kl = kl_divergence(ref_up, logits_up) + kl_divergence(ref_down, logits_down)  # (B, 28)
                loss = loss + ac.kl_weight * kl.mean()
                logs["kl"] = float(kl.mean().detach())
            return loss, logs
        delta = self._delta(model, batch)
        loss = (delta**2).mean()
        return loss, {"critic": float(loss.detach()), "reward": reward_mean, **self.rollout_speeds}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_cli(args, "actor-critic", ActorCriticStage)
