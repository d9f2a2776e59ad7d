"""Add the duet's follower GPT to a model folder: ``python -m training add-follower --run DUET_RUN --model DIR``.

The follower reads the codes of the model's own VQ-VAE, so it goes only into the folder it was trained
on, or one whose VQ-VAE gives the same codes (a decoder fine-tuned after the duet run: checked by the
digest of the encoders and codebooks; runs made before that digest was recorded, by the VQ-VAE file's).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from engine.checkpoint import load_model, save_model
from engine.models.follower import FollowerConfig, FollowerGPT
from training.errors import TrainingError

from .stages.common import read_run, same_codes


def add_follower(duet_run: str | Path, model_dir: str | Path) -> Path:
    """Put the follower GPT of a ``duet`` (or ``duet-rl``) run into the model folder whose VQ-VAE it was trained on
    (checked by ``same_codes``: codes of another VQ-VAE mean nothing to it); the folder is
    rewritten atomically, replacing a follower it had."""
    state = read_run(duet_run, ("duet", "duet-rl"))
    effective = state["config"]["effective"]
    model = load_model(model_dir)
    if not same_codes(effective, model_dir, model.vqvae):
        raise TrainingError(f"{duet_run} was trained on the codes of {effective.get('model_dir')}, whose VQ-VAE "
                            f"does not give the codes of the one in {model_dir}")
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
