"""VQ-VAE step 2: the root-velocity decoder on the lower-body codes (docs/REFERENCE.md §2.2).

``python -m training root --config training/configs/paper_root.yaml``

Starts from a step-1 run (``init.vqvae_run``), adds ``vqvae_down.decoders_root`` and trains only it:
the target is the root velocity v_t = r_{t+1} - r_t (last frame repeated), the loss L1 + root_acc x
L1 of its time difference (``SepVQVAE.forward_root``). Encoders, codebooks and pose decoders are
frozen (``requires_grad=False``; the codebooks are only read, never updated).
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


class RootStep(nn.Module):
    """Wraps the VQ-VAE so that DDP sees ``forward_root`` as the forward pass."""

    def __init__(self, vqvae: SepVQVAE):
        super().__init__()
        self.vqvae = vqvae

    def forward(self, pose: torch.Tensor, velocity: torch.Tensor):
        return self.vqvae.forward_root(pose, velocity)


class RootStage(VQVAEPartStage):
    name = "root"
    trainable = ("vqvae_down.decoders_root.",)

    def config_for(self, base: VQVAEConfig, cfg: TrainConfig) -> VQVAEConfig:
        return replace(base, with_root_decoder=True, root_acc=cfg.vqvae.root_acc)

    def build(self, device: torch.device) -> nn.Module:
        return RootStep(self.build_vqvae()).to(device)

    def batch(self, step: int, generator: torch.Generator, device: torch.device):
        idx = sample_indices(self.num_windows, self.cfg.batch_size, generator)
        pose, velocity = poses_and_root_velocity(gather_windows(self.train_windows, idx))
        return torch.from_numpy(pose).to(device), torch.from_numpy(velocity).to(device)

    def loss(self, model: nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        model.eval()  # the frozen parts run as at inference (the official code puts them in eval mode)
        _, losses = model(*batch)
        return losses["loss"], {k: float(losses[k].detach()) for k in ("velocity", "acceleration")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_cli(args, "root", RootStage)
