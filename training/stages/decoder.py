"""VQ-VAE step 3 (not in Bailando): the pose decoders fine-tuned on frozen codes, for speed.

``python -m training decoder --config training/configs/default_decoder.yaml``

Starts from a ``root`` run (or a step-1 ``vqvae`` run; ``init.vqvae_run``) and trains only the two pose
decoders (``vqvae_up.decoders``, ``vqvae_down.decoders``) with L1 + velocity + acceleration and
``vqvae.speed`` x the L1 of each joint's speed. Encoders, codebooks and the root decoder are frozen, so
a pose has the same codes before and after: a GPT or follower trained on the codes stays valid, and only
what the codes decode to changes.

Why: a decoder trained on L1 alone plays a code whose moves vary as their average, slower than any of
them (encode -> decode of the training takes kept 0.64-0.80x of their joint speed). Adding the speed term
to the whole VQ-VAE's training kept more speed but moved the codes and cost 20-35 % more pose error; on
frozen codes the decoders gained it with less pose error and less jerk (assets/MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from torch import nn

from engine.models.vqvae import SepVQVAE, VQVAEConfig
from training.config import TrainConfig

from .common import (
    VQVAEPartStage,
    add_stage_arguments,
    gather_windows,
    poses_and_root_velocity,
    run_stage_cli,
    sample_indices,
)


class DecoderStep(nn.Module):
    """Wraps the VQ-VAE so that DDP sees ``forward_decoders`` as the forward pass (weights saved under
    ``vqvae.``, as the root stage saves them)."""

    def __init__(self, vqvae: SepVQVAE):
        super().__init__()
        self.vqvae = vqvae

    def forward(self, pose: torch.Tensor):
        return self.vqvae.forward_decoders(pose)


class DecoderStage(VQVAEPartStage):
    name = "decoder"
    trainable = ("vqvae_up.decoders.", "vqvae_down.decoders.")  # the pose decoders, not the root decoder

    def config_for(self, base: VQVAEConfig, cfg: TrainConfig) -> VQVAEConfig:
        return replace(base, speed=cfg.vqvae.speed)  # the earlier run's VQ-VAE; the speed weight is this stage's

    def build(self, device: torch.device) -> nn.Module:
        return DecoderStep(self.build_vqvae()).to(device)

    def batch(self, step: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        idx = sample_indices(self.num_windows, self.cfg.batch_size, generator)
        pose, _ = poses_and_root_velocity(gather_windows(self.train_windows, idx))
        return torch.from_numpy(pose).to(device)  # (B, T, 72); the model zeroes the root channels

    def loss(self, model: nn.Module, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        model.eval()  # the frozen parts run as at inference; the decoders have no train-only layers
        _, losses = model(batch)
        shown = ("recon", "velocity", "acceleration", "speed")
        return losses["loss"], {k: float(losses[k].detach()) for k in shown if k in losses}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_cli(args, "decoder", DecoderStage)
