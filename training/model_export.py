"""Turn training runs into an engine model folder that ``python -m engine generate --model`` uses.

``python -m training export --run RUN [--run RUN ...] -o MODEL_DIR``

The GPT comes from an ``actor-critic`` run (preferred) or a ``gpt`` run; the VQ-VAE from a ``decoder``,
``root`` or ``vqvae`` run given with ``--run`` (preferred in that order), or else from the run the GPT was trained on
(recorded in its checkpoint). The model config records the feature mode the GPT was trained with
("full" for our models: live rhythm columns) and its default start codes. The critic is dropped
unless ``--keep-critic`` (generation never uses it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from engine.checkpoint import DanceModel, ModelConfig, save_model
from engine.models.gpt import CrossCondGPT
from training.errors import TrainingError

from .stages.common import gpt_weights_of, read_run, vqvae_from_run


def export_model(runs: list[str | Path], out_dir: str | Path, name: str | None = None,
                 keep_critic: bool = False, description: str = "",
                 decoding: dict[str, object] | None = None) -> Path:
    """Write the engine model folder made of these runs; returns its path."""
    states = {}
    for run in runs:
        state = read_run(run, ("vqvae", "root", "decoder", "gpt", "actor-critic"))
        if state["stage"] in states:
            raise TrainingError(f"two {state['stage']!r} runs given ({states[state['stage']][0]} and {run})")
        states[state["stage"]] = (Path(run), state)
    gpt_stage = "actor-critic" if "actor-critic" in states else "gpt" if "gpt" in states else None
    if gpt_stage is None:
        raise TrainingError("export needs a 'gpt' or 'actor-critic' run (a model is a VQ-VAE plus a GPT)")
    gpt_run, gpt_state = states[gpt_stage]
    effective = gpt_state["config"]["effective"]

    vqvae_stage = next((s for s in ("decoder", "root", "vqvae") if s in states), None)  # in that preference
    if vqvae_stage is not None:
        vqvae_run = states[vqvae_stage][0]
    else:
        vqvae_run = Path(effective["vqvae_run"])
    vqvae = vqvae_from_run(vqvae_run)
    if not vqvae.config.with_root_decoder:
        print(f"warning: {vqvae_run} is a step-1 VQ-VAE without the root decoder: dances will stay in place; "
              "export a 'root' run for travelling motion", file=sys.stderr)

    gpt_config, weights = gpt_weights_of(gpt_state)
    if not keep_critic and gpt_config.n_layer_critic:
        gpt_config = replace(gpt_config, n_layer_critic=0)
        weights = {k: v for k, v in weights.items() if not k.startswith("critic_net.")}
    gpt = CrossCondGPT(gpt_config)
    gpt.load_state_dict(weights, strict=True)

    sources = ", ".join(f"{stage} run {run} (step {state['step']})" for stage, (run, state) in states.items())
    config = ModelConfig(
        name=name or Path(out_dir).name,
        vqvae=vqvae.config,
        gpt=gpt_config,
        feature_mode=effective.get("feature_mode", "full"),
        default_start=tuple(effective.get("default_start", (0, 0))),
        description=description or f"trained with python -m training from {sources}",
        source=f"VQ-VAE from {vqvae_run}; GPT from {gpt_run}",
        music_mean=effective.get("music_mean"),  # None for runs without standardised music
        music_std=effective.get("music_std"),
        styles=list(effective.get("styles", [])) if gpt_config.n_styles else [],
        style_starts={k: tuple(v) for k, v in effective.get("style_starts", {}).items()},
        decoding=dict(decoding or {}),
    )
    with torch.no_grad():
        return save_model(DanceModel(config, vqvae.eval(), gpt.eval()), out_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", action="append", required=True, type=Path,
                        help="a run folder (repeatable): gpt or actor-critic, optionally root/vqvae")
    parser.add_argument("-o", "--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--name", default=None, help="model name (default: the folder name)")
    parser.add_argument("--keep-critic", action="store_true", help="keep the actor-critic's critic head")
    parser.add_argument("--description", default="", help="free text stored in the model config")
    parser.add_argument("--decoding", type=json.loads, default=None, metavar="JSON",
                        help='the model\'s default decoding, e.g. \'{"greedy": false, "temperature": 1.0, '
                             '"style_guidance": 2.5}\' (default: none, the official greedy decoding)')


def run(args: argparse.Namespace) -> int:
    out = export_model(args.run, args.out, args.name, args.keep_critic, args.description, args.decoding)
    print(f"wrote {out}")
    return 0

