"""``python -m training <command> ...``: one entry point for the training package's commands.

Each command lives in its own module, which provides ``add_arguments(parser)`` and ``run(args) -> int``
(and a module docstring whose first line is its help). Only the chosen command's module is imported,
so ``evaluate`` does not pull in torch. Adding a command is one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from engine.errors import DanceError

# command name -> (module providing add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("training.metrics.evaluate", "FID/diversity/BAS and physical metrics of generated dances"),
    "vqvae": ("training.stages.vqvae", "stage 1: train the pose VQ-VAE (both body halves)"),
    "root": ("training.stages.root", "stage 2: train the root-velocity decoder of the VQ-VAE"),
    "decoder": ("training.stages.decoder", "VQ-VAE step 3 (optional): fine-tune the pose decoders on frozen codes"),
    "gpt": ("training.stages.gpt", "stage 3: train the cross-conditional motion GPT on VQ-VAE codes"),
    "actor-critic": ("training.stages.actor_critic", "stage 4: actor-critic fine-tuning with the beat reward"),
    "duet": ("training.stages.duet", "train the duet's follower GPT on the salsa couples (the solo model's VQ-VAE)"),
    "duet-rl": ("training.stages.duet_rl", "optional RL phase of the follower: feet that agree with where it places itself"),
    "export": ("training.model_export", "write an engine model folder from training runs"),
    "add-follower": ("training.follower_export", "put a duet run's follower GPT into the model folder it was trained on"),
    "choose-start": ("training.choose_start", "set a model's default start codes by how the dances from them move"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Bailando training package: training stages and evaluation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<14}{help_}" for name, (_, help_) in COMMANDS.items()),
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="command", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments (see COMMAND -h)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        _top_parser().print_help(sys.stderr)
        return 2
    top = _top_parser().parse_args(argv[:1])  # the command name only; the rest goes to the command
    module_name, help_ = COMMANDS[top.command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m training {top.command}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except DanceError as exc:  # one actionable line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
