"""VQ-VAE step 1: both body halves, root channels zeroed (docs/REFERENCE.md §2.1).

``python -m training vqvae --config training/configs/paper_vqvae.yaml``

Loss per half: L1 of positions + velocity + acceleration and 0.02 x commitment (+ ``vqvae.speed`` x the
L1 of each joint's speed, off by default and in the paper: not in the official loss); the total is the
mean of the halves (``SepVQVAE.forward``). The codebooks follow an EMA of their assigned encoder outputs,
with dead-code restart. Under DDP every rank all-reduces the EMA statistics and takes rank 0's random
rows for (re)initialisation, so every rank keeps the same codebook; DDP itself must then not
broadcast buffers (``broadcast_buffers=False``), which would otherwise overwrite them each step.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.models.vqvae import SepVQVAE
from training.config import TrainConfig
from training.data.sources import load_windows
from training.trainer import all_reduce_sum

from .common import (
    StageBase,
    add_stage_arguments,
    broadcast_from_rank0,
    gather_windows,
    poses_and_root_velocity,
    run_stage_cli,
    sample_indices,
)


class VQVAEStage(StageBase):
    ddp_options = {"broadcast_buffers": False}
    name = "vqvae"

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        self.cfg = cfg
        # step 1 has no root decoder (official SepVQVAE); the root stage adds it
        self.vqvae_config = replace(cfg.vqvae, with_root_decoder=False)
        self.train_windows, self.val_windows, _ = load_windows(cfg.data)
        self.num_windows = len(self.train_windows)

    def effective(self) -> dict[str, Any]:
        return {"vqvae": self.vqvae_config.to_dict(), "train_windows": self.num_windows}

    def build(self, device: torch.device) -> nn.Module:
        model = SepVQVAE(self.vqvae_config).to(device)
        model.set_distributed(all_reduce_sum, broadcast_from_rank0)
        return model



    def batch(self, step: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        idx = sample_indices(self.num_windows, self.cfg.batch_size, generator)
        pose, _ = poses_and_root_velocity(gather_windows(self.train_windows, idx))
        return torch.from_numpy(pose).to(device)  # (B, T, 72); the model zeroes the root channels

    def loss(self, model: nn.Module, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        _, losses = model(batch)
        shown = ("recon", "velocity", "acceleration", "commit", "speed", "recon_up", "recon_down")
        return losses["loss"], {k: float(losses[k].detach()) for k in shown if k in losses}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_cli(args, "vqvae", VQVAEStage)
