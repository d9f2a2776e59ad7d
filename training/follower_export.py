"""Add the duet's follower GPT to a model folder: ``python -m training add-follower --run DUET_RUN --model DIR``.

The follower reads the codes of the model's own VQ-VAE, so it goes only into the folder it was trained
on (``init.model_dir`` of the duet run, checked by the VQ-VAE file's digest).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from engine.checkpoint import VQVAE_FILE, load_model, save_model
from engine.models.follower import FollowerConfig, FollowerGPT
from training.errors import TrainingError

from .stages.common import file_digest, read_run


def add_follower(duet_run: str | Path, model_dir: str | Path) -> Path:
    """Put the follower GPT of a ``duet`` (or ``duet-rl``) run into the model folder whose VQ-VAE it was trained on
    (checked by the VQ-VAE file's digest: codes of another VQ-VAE mean nothing to it); the folder is
    rewritten atomically, replacing a follower it had."""
    state = read_run(duet_run, ("duet", "duet-rl"))
    effective = state["config"]["effective"]
    digest = file_digest(Path(model_dir) / VQVAE_FILE)
    if effective.get("vqvae_digest") != digest:
        raise TrainingError(f"{duet_run} was trained on the codes of {effective.get('model_dir')}, whose VQ-VAE "
                            f"is not the one in {model_dir}")
    model = load_model(model_dir)
    follower_config = FollowerConfig(**effective["follower"])
    follower = FollowerGPT(follower_config)
    follower.load_state_dict(state["model"], strict=True)
    model.follower = follower.eval()
    model.config = replace(model.config, follower=follower_config,
                           source=f"{model.config.source}; follower from {duet_run} (step {state['step']})")
    with torch.no_grad():
        return save_model(model, model_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="the duet (or duet-rl) run folder")
    parser.add_argument("--model", type=Path, required=True, help="the model folder it was trained on")


def run(args: argparse.Namespace) -> int:
    print(f"wrote {add_follower(args.run, args.model)}")
    return 0
