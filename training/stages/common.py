"""What the four stages share: windows as tensors, reading earlier runs, music per clip, the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from engine.audio import extract_features
from engine.clock import FRAMES_PER_TOKEN, TOKEN_FPS
from engine.files import file_sha256
from engine.models.gpt import GPTConfig
from engine.models.vqvae import SepVQVAE, VQVAEConfig
from training.config import TrainConfig, load_config
from training.data.clip import MotionClip
from training.data.windows import MotionWindows
from training.errors import ConfigError, TrainingError
from training.trainer import CHECKPOINT_NAME, DistInfo, load_checkpoint, train


# --- motion windows -------------------------------------------------------------------------------------
def sample_indices(n: int, batch_size: int, generator: torch.Generator,
                   weights: torch.Tensor | None = None) -> np.ndarray:
    """Random window indices with replacement (the official RandomSampler(replacement=True)), uniform or
    in proportion to ``weights`` (n,)."""
    if n == 0:
        raise TrainingError("there are no training windows: the clips are all shorter than data.window")
    if weights is None:
        return torch.randint(n, (batch_size,), generator=generator).numpy()
    return torch.multinomial(weights, batch_size, replacement=True, generator=generator).numpy()


def style_weights(styles: torch.Tensor, balance: float) -> torch.Tensor | None:
    """Sampling weight of each window (N,) from its style index: count(style) ** -balance (0: None, uniform;
    1: every style drawn equally often), so a style with little data is not drowned by one with much."""
    if balance == 0:
        return None
    counts = torch.bincount(styles).double()
    return counts[styles].pow(-balance)


def poses_and_root_velocity(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows (B, T, 24, 3) world joints -> root-relative poses (B, T, 72), root velocity (B, T, 3).

    Velocity v_t = r_{t+1} - r_t, the last frame repeating the one before (docs/REFERENCE.md §2.2).
    """
    joints = np.asarray(joints, dtype=np.float32)
    root = joints[:, :, 0]  # (B, T, 3)
    rel = joints - root[:, :, None]
    velocity = np.empty_like(root)
    velocity[:, :-1] = root[:, 1:] - root[:, :-1]
    velocity[:, -1] = velocity[:, -2]
    return rel.reshape(*rel.shape[:2], 72), velocity


def gather_windows(windows: MotionWindows, indices: np.ndarray) -> np.ndarray:
    return np.stack([windows[int(i)]["joints"] for i in indices])  # (B, T, 24, 3)


# --- distributed ----------------------------------------------------------------------------------------
def broadcast_from_rank0(tensor: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(tensor, src=0)


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


# --- earlier runs ---------------------------------------------------------------------------------------
def read_run(run_dir: str | Path, expect: tuple[str, ...]) -> dict[str, Any]:
    """The checkpoint of an earlier stage's run, checked to be one of the ``expect``ed stages."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise TrainingError(f"{run_dir} has no {CHECKPOINT_NAME}: run the {'/'.join(expect)} stage there first")
    state = load_checkpoint(path)
    if state.get("stage") not in expect:
        raise TrainingError(f"{run_dir} holds a {state.get('stage')!r} run; expected {' or '.join(expect)}")
    return state


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def vqvae_from_run(run_dir: str | Path) -> SepVQVAE:
    """The VQ-VAE of a ``vqvae``, ``root`` or ``decoder`` run, in eval mode (weights, codebook and EMA
    statistics)."""
    state = read_run(run_dir, ("vqvae", "root", "decoder"))
    cfg = VQVAEConfig.from_dict(state["config"]["effective"]["vqvae"])
    model = SepVQVAE(cfg)
    weights = state["model"] if state["stage"] == "vqvae" else strip_prefix(state["model"], "vqvae.")
    model.load_state_dict(weights, strict=True)
    return model.eval()


def gpt_weights_of(state: dict[str, Any]) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """The GPT config and weights (the critic's included, where it has one) of a ``gpt`` or
    ``actor-critic`` run's checkpoint state (``read_run``)."""
    config = GPTConfig(**state["config"]["effective"]["gpt"])
    weights = state["model"] if state["stage"] == "gpt" else strip_prefix(state["model"], "gpt.")
    return config, weights


def file_digest(path: str | Path) -> str:
    return file_sha256(path)[:24]


def same_codes(effective: dict[str, Any], model_dir: str | Path, vqvae: SepVQVAE) -> bool:
    """Whether ``vqvae`` (loaded from ``model_dir``) gives the codes a duet run (its ``effective`` record)
    was trained on: by the digest of its encoders and codebooks, so a decoder fine-tuned since still fits;
    runs that predate that digest, by the digest of the VQ-VAE file they were trained on."""
    from engine.checkpoint import VQVAE_FILE

    if "codes_digest" in effective:
        return bool(vqvae.codes_digest() == effective["codes_digest"])
    return bool(file_digest(Path(model_dir) / VQVAE_FILE) == effective.get("vqvae_digest"))


# --- music ----------------------------------------------------------------------------------------------
def clip_music_tokens(clip: MotionClip, cfg: TrainConfig) -> np.ndarray:
    """7.5 fps features (N, 438) aligned so that row k is the music of the clip's token k (frames 8k..8k+7).

    The clip's own song where it has one (from ``music_offset_s`` on); otherwise, when enabled, the
    synthesised accompaniment fitted to its motion beats (engine.accompaniment).
    """
    n_tokens = clip.num_frames // FRAMES_PER_TOKEN
    if clip.music_path is not None and Path(clip.music_path).is_file():
        song = extract_features(clip.music_path, cfg.music.mode, with_beats=False,
                                cache_dir=cfg.music.feature_cache_dir)
        first = int(round(clip.music_offset_s * TOKEN_FPS))
        feats = song.features[first:]
    elif cfg.music.accompaniment:
        from engine.accompaniment import accompaniment_for_motion

        if cfg.music.accompaniment_dir is None:
            raise ConfigError("music.accompaniment_dir must be set to synthesise accompaniments")
        wav, _ = accompaniment_for_motion(clip.joints, cfg.music.accompaniment_dir, clip.name, clip.fps,
                                          beats=clip.meta.get("accompaniment_beats"))
        feats = extract_features(wav, cfg.music.mode, with_beats=False,
                                 cache_dir=cfg.music.feature_cache_dir).features
    else:
        raise TrainingError(f"clip {clip.name!r} has no music and music.accompaniment is off; set "
                            "data.aistpp_music_dir or turn music.accompaniment on")
    if feats.shape[0] < n_tokens:  # the song ends first: hold its last frame
        feats = np.concatenate([feats, np.repeat(feats[-1:], n_tokens - feats.shape[0], axis=0)])
    return np.ascontiguousarray(feats[:n_tokens], dtype=np.float32)


# --- policy fine-tuning --------------------------------------------------------------------------------------
def kl_divergence(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(reference) || softmax(logits)) over the last axis: (B, t, V) -> (B, t). The RL stages'
    anchor to the model before fine-tuning."""
    ref = F.log_softmax(reference_logits.float(), dim=-1)
    return (ref.exp() * (ref - F.log_softmax(logits.float(), dim=-1))).sum(-1)


# --- the stage protocol's shared parts --------------------------------------------------------------------
class StageBase:
    """What every stage does alike: train the parameters that want gradients, and wrap the model for DDP
    with the stage's ``ddp_options`` (e.g. ``broadcast_buffers=False`` where buffers are EMA codebooks)."""

    ddp_options: dict[str, Any] = {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        return {}  # no validation data unless the stage has some

    def trainable_parameters(self, model: nn.Module):
        return [p for p in model.parameters() if p.requires_grad]

    def wrap_ddp(self, model: nn.Module, info: DistInfo) -> nn.Module:
        ids = [info.local_rank] if next(model.parameters()).is_cuda else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, **self.ddp_options)


class VQVAEPartStage(StageBase):
    """A stage that trains one part of an earlier run's VQ-VAE (``init.vqvae_run``) and freezes the rest,
    the encoders and codebooks always among the frozen (read, never updated): the root stage adds and
    trains the root decoder, the decoder stage fine-tunes the pose decoders. Subclasses set ``name``,
    ``trainable`` (parameter-name prefixes) and ``config_for`` (the VQ-VAE config of this stage)."""

    ddp_options = {"broadcast_buffers": False}
    name = ""
    trainable: tuple[str, ...] = ()

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        from training.data.sources import load_windows

        if not cfg.init.vqvae_run:
            raise ConfigError(f"the {self.name} stage needs init.vqvae_run (the run folder of an earlier VQ-VAE stage)")
        self.cfg = cfg
        self.base = vqvae_from_run(cfg.init.vqvae_run)
        self.vqvae_config = self.config_for(self.base.config, cfg)
        self.train_windows, self.val_windows, _ = load_windows(cfg.data)
        self.num_windows = len(self.train_windows)

    def config_for(self, base: VQVAEConfig, cfg: TrainConfig) -> VQVAEConfig:
        raise NotImplementedError

    def effective(self) -> dict[str, Any]:
        return {"vqvae": self.vqvae_config.to_dict(), "vqvae_run": self.cfg.init.vqvae_run,
                "train_windows": self.num_windows}

    def build_vqvae(self) -> SepVQVAE:
        """The earlier run's VQ-VAE with this stage's config; only the ``trainable`` parts want gradients
        (and only they may be new: the root decoder when the earlier run had none)."""
        vqvae = SepVQVAE(self.vqvae_config)
        missing, unexpected = vqvae.load_state_dict(self.base.state_dict(), strict=False)
        if unexpected or any(not k.startswith(self.trainable) for k in missing):
            raise TrainingError(f"the run {self.cfg.init.vqvae_run} does not fit this VQ-VAE: missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]}")
        for name, p in vqvae.named_parameters():
            p.requires_grad_(name.startswith(self.trainable))
        return vqvae


# --- CLI ------------------------------------------------------------------------------------------------
def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="YAML config (see training/configs/)")
    parser.add_argument("--run", type=Path, default=None, help="run folder (default: the config's run_dir)")
    parser.add_argument("--resume", action="store_true",
                        help="require an existing checkpoint (a run folder with one always resumes)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set loop.steps=100 (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


StageFactory = Callable[[TrainConfig, Path], Any]


def train_stage(make_stage: StageFactory, cfg: TrainConfig, run_dir: str | Path | None = None,
                progress: bool = True, stop_after: int | None = None) -> nn.Module:
    """Build a stage from a config and run the shared loop on it; returns the trained module."""
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.run_dir)
    stage = make_stage(cfg, run_dir)
    if cfg.epochs is not None or cfg.milestone_epochs:
        cfg.apply_epochs(stage.num_windows)
    dump = cfg.to_dict()
    dump["effective"] = stage.effective()
    return train(stage, run_dir, cfg.loop, cfg.optim, config_dump=dump, wrap_ddp=stage.wrap_ddp,
                 progress=progress, stop_after=stop_after, config_defaults=cfg.defaults_dict())


def run_stage_cli(args: argparse.Namespace, stage_name: str, make_stage: StageFactory) -> int:
    cfg = load_config(args.config, args.set)
    if cfg.stage != stage_name:
        raise ConfigError(f"{args.config} is a {cfg.stage!r} config; use 'python -m training {cfg.stage}'")
    run_dir = args.run if args.run is not None else Path(cfg.run_dir)
    if args.resume and not (run_dir / CHECKPOINT_NAME).exists():
        raise TrainingError(f"--resume: {run_dir} has no {CHECKPOINT_NAME} to resume from")
    train_stage(make_stage, cfg, run_dir, progress=not args.quiet)
    if is_main_process():
        print(f"{stage_name}: done; checkpoint, metrics.csv and loss.png in {run_dir}")
    return 0


def describe(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=str)
