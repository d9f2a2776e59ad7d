"""What a user may ask of one generation, gathered the same way by every front end.

``build_options`` turns plain values (command-line flags, Blender properties) into ``GenerateOptions``,
with one set of defaults and one rule for when to sample; ``add_generation_arguments`` defines the
flags that the engine's CLI and the batch renderer share, and ``options_from_args`` reads them back.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from .beats import BeatSyncOptions
from .checkpoint import ANY_STYLE
from .clock import MOTION_FPS
from .generate import SUPPORTED_FPS, GenerateOptions
from .sampling import APPROXIMATIONS, SamplingOptions, max_repeat_for


def build_options(
    *,
    style: str = ANY_STYLE,
    style_guidance: float | None = None,
    start: tuple[int, int] | None = None,
    greedy: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    exact: bool = False,
    shift: int | None = None,
    draft: str | None = None,
    max_hold: float | None = None,
    beat_sync: float = 1.0,
    fps: float = MOTION_FPS,
    ground: bool = True,
    lock_feet: bool = True,
    precision: str = "float32",
    rotations: bool = True,
    threads: int | None = None,
    reserve_cores: int = 0,
) -> GenerateOptions:
    """The options of one generation.

    greedy:    True: argmax, as the official sampler. None decides from the other values: a temperature,
               a top-k or a seed asks for sampling; otherwise the model's default decoding (its
               ``decoding``: the default model samples at temperature 1 from seed 0; a model without
               one, such as the official checkpoints, decodes greedily).
    max_hold:  longest time (s) one code pair may repeat; None the engine's default (2 s), 0 no limit.
    beat_sync: how far the moves are pulled onto the beats (0 off, 1 fully).
    Values are checked when the options are used (``Choreographer.check_options``).
    """
    if greedy is None and (temperature is not None or top_k is not None or seed is not None):
        greedy = False
    sampling = {"greedy": greedy, "temperature": temperature, "top_k": top_k,
                "seed": seed, "fast": not exact, "draft": draft, "style_guidance": style_guidance}
    if max_hold is not None:
        sampling["max_repeat"] = max_repeat_for(max_hold)
    if shift is not None:
        sampling["shift"] = shift
    return GenerateOptions(
        style=style,
        start_codes=tuple(start) if start else None,  # type: ignore[arg-type]
        sampling=SamplingOptions(**sampling),
        fps=fps,
        beat_sync=BeatSyncOptions(strength=beat_sync),
        ground=ground,
        lock_feet=lock_feet,
        precision=precision,
        rotations=rotations,
        threads=threads,
        reserve_cores=reserve_cores,
    )


def add_generation_arguments(parser: argparse.ArgumentParser, *, fps: float = MOTION_FPS) -> None:
    """The flags of one generation, as the CLI and the batch renderer take them (``fps``: the default)."""
    parser.add_argument("--model", type=str, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    parser.add_argument("--fps", type=float, default=fps, choices=SUPPORTED_FPS, help="output frame rate")
    parser.add_argument("--style", default=ANY_STYLE,
                        help="dance style: any (default) or one the model knows (the default model: "
                             "salsa, ballet, street, indian); 'python -m engine info' lists a model's")
    parser.add_argument("--style-guidance", type=float, default=None, metavar="W",
                        help="how strongly the style steers (1: as trained; 2-3: a more distinct style, twice "
                             "the GPT work; default: the model's, 2.5 for the default model)")
    parser.add_argument("--greedy", action="store_true",
                        help="always the most likely code (the official decoding) instead of the model's default")
    parser.add_argument("--start", type=int, nargs=2, metavar=("UP", "DOWN"), default=None,
                        help="codes of the first token (default: the model's)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sample with this temperature instead of greedy decoding")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely codes")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed; asks for sampling (temperature 1 unless --temperature)")
    parser.add_argument("--exact", action="store_true",
                        help="recompute the whole window every token, as the official sampler (slower)")
    parser.add_argument("--shift", type=int, default=None,
                        help="window re-anchoring of the official sampler (default: exact slides by one, "
                             "fast uses the sampler's default)")
    parser.add_argument("--draft", choices=APPROXIMATIONS, default=None,
                        help="greedy fast mode checked against an approximate draft: same tokens, fewer passes")
    parser.add_argument("--approximate", choices=APPROXIMATIONS, default=None,
                        help="run an approximate GPT: faster, but tokens may differ from the float32 model")
    parser.add_argument("--beat-sync", type=float, default=1.0, metavar="STRENGTH",
                        help="re-time the dance so its moves land on the beats: 1 fully (default), 0 off")
    parser.add_argument("--max-hold", type=float, default=None, metavar="SECONDS",
                        help="longest time one code pair may repeat (default 2; 0: no limit, as the official sampler)")
    parser.add_argument("--no-ground", action="store_true", help="keep the raw height (no feet-on-floor fix)")
    parser.add_argument("--no-foot-lock", action="store_true",
                        help="let planted feet slide as decoded (default: the body moves over the planted foot, each foot "
                             "stays on its spot while planted and steps between spots)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: 1 for small models, the free cores for large ones)")
    parser.add_argument("--variations", type=int, default=1, metavar="N",
                        help="N dances per song (seeds --seed, --seed + 1, ..., sampled), decoded as one batch: "
                             "files <song>_v1 .. <song>_vN, each the dance its seed gives alone")


def options_from_args(args: argparse.Namespace, *, rotations: bool = True) -> GenerateOptions:
    """``GenerateOptions`` from the flags of ``add_generation_arguments``."""
    return build_options(
        style=args.style, style_guidance=args.style_guidance, greedy=True if args.greedy else None,
        start=tuple(args.start) if args.start else None, temperature=args.temperature, top_k=args.top_k,
        seed=args.seed, exact=args.exact, shift=args.shift, draft=args.draft, max_hold=args.max_hold,
        beat_sync=args.beat_sync, fps=args.fps, ground=not args.no_ground, lock_feet=not args.no_foot_lock,
        precision=args.approximate or "float32", rotations=rotations, threads=args.threads,
    )


def variation_options(options: GenerateOptions, count: int) -> list[GenerateOptions]:
    """``count`` option sets that differ only by seed (seed, seed + 1, ...), sampled, never greedy (at the
    chosen temperature, or the model's when the decoding is left to the model); ``[options]`` for one."""
    if count <= 1:
        return [options]
    base_seed = options.sampling.seed or 0
    return [replace(options, sampling=replace(options.sampling, greedy=False, seed=base_seed + i))
            for i in range(count)]


def variation_stems(stem: str, count: int) -> list[str]:
    """File stems of a song's variations: the song's own for one, ``<stem>_v1``, ``<stem>_v2``, ... else."""
    return [stem] if count <= 1 else [f"{stem}_v{i + 1}" for i in range(count)]
