"""choose a model's default start codes (and each style's temperature) by how the dances from them move

``python -m training choose-start --model DIR --config GPT_CONFIG --song A.ogg [--song B.ogg ...]
[--temperatures 1.0 1.2 1.4]``

The GPT stage records as default start the most common first code pair of its training windows. For
the default model that is a near-neutral standing pose from which greedy dances barely move their
feet: the slowest dance on every song measured (assets/MODEL_CARD.md). This command tries the ``--top``
most common first pairs instead. From each, the model dances (the engine's default decoding) to the
first ``--seconds`` of every song given; a pair qualifies when its dances' feet slide no more than in
the training takes, and the qualifying pair whose mean joint speed is closest to the training takes'
(in ratio) becomes the model's ``default_start`` (``config.json`` rewritten in place, atomically;
nothing else changes). A model with styles gets a start per style the same way (``style_starts``):
candidates from that style's windows, dances asked for that style, targets from its own takes.

With ``--temperatures``, each style (and "any") then dances from its chosen start at every temperature
given, and the lowest temperature whose dances move within 10 % of the takes' speed with feet within
their skating (else the closest speed, as for the start) becomes its decoding temperature (``decoding.temperature`` for "any", ``style_decoding`` for a
style): a style the GPT saw little of is danced too slowly at the temperature that suits the rest.
Give training songs only (the actor-critic songs): the choice must not see the music the model is
measured on.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DanceError


def candidate_starts(codes_up: np.ndarray, codes_down: np.ndarray, top: int) -> list[tuple[int, int]]:
    """The ``top`` most common first (up, down) pairs of training windows (N, T), most common first."""
    counts = Counter(zip(np.asarray(codes_up)[:, 0].tolist(), np.asarray(codes_down)[:, 0].tolist()))
    return [pair for pair, _ in counts.most_common(top)]


def pick_start(rows: list[dict[str, Any]], speed_target: float, skating_limit: float) -> dict[str, Any]:
    """The row (a start or a temperature, with its ``speed`` and ``skating``) to keep: among those with
    ``skating <= skating_limit``, the speed closest to ``speed_target`` in ratio; without any, the one
    whose feet slide least."""
    fine = [r for r in rows if r["skating"] <= skating_limit]
    if not fine:
        return min(rows, key=lambda r: r["skating"])
    return min(fine, key=lambda r: abs(math.log(max(r["speed"], 1e-9) / speed_target)))


# A temperature whose dances move within this share of the takes' speed is as good as any closer one: the
# lowest such temperature is chosen (the least randomness that reaches the speed). Every step up costs
# variety: on the held-out songs the default model's "any" at 1.1 instead of 1.0 (0.93x of the takes'
# speed on the training songs, 1.0x on the held-out ones) cut the geometric diversity of its dances from
# 0.84 to 0.74 of the real takes'; 5 % had chosen it, 10 % does not.
TEMPERATURE_SPEED_TOLERANCE = 0.10


def pick_temperature(rows: list[dict[str, Any]], speed_target: float, skating_limit: float) -> dict[str, Any]:
    """The row (``temperature``, ``speed``, ``skating``) to keep: among those with ``skating <=
    skating_limit``, the lowest temperature whose speed is within ``TEMPERATURE_SPEED_TOLERANCE`` of
    ``speed_target``; without one, ``pick_start``'s rule (the closest speed)."""
    near = [r for r in rows if r["skating"] <= skating_limit
            and abs(r["speed"] / speed_target - 1.0) <= TEMPERATURE_SPEED_TOLERANCE]
    if near:
        return min(near, key=lambda r: r["temperature"])
    return pick_start(rows, speed_target, skating_limit)


def choose_start(model_dir: str | Path, config: str | Path | Any, songs: list[Path], top: int = 12,
                 seconds: float = 30.0, write: bool = True,
                 temperatures: list[float] | None = None) -> dict[str, Any]:
    """Try the candidates, rewrite ``default_start`` and, for a model with styles, ``style_starts`` (and,
    with ``temperatures``, each one's temperature) when ``write``, and return what was measured:
    {"styles": {"any": {...}, <style>: {...}}, ...}.

    ``config``: the GPT stage's config (a path, or a loaded ``TrainConfig``). For a style the candidates
    are the most common first pairs of that style's windows, its dances are asked for that style, and
    the targets are its own training takes'."""
    import soundfile as sf
    import torch

    from engine.checkpoint import ANY_STYLE, write_config
    from engine.generate import Choreographer, GenerateOptions
    from engine.sampling import SamplingOptions
    from training.config import load_config
    from training.data.sources import load_windows
    from training.metrics.physical import foot_skating_ratio, mean_joint_speed, style_speed
    from training.stages.gpt import CODES_FILE

    if not songs:
        raise DanceError("give at least one --song (a training song, not a held-out one)")
    for t in temperatures or []:
        if not (math.isfinite(t) and t > 0):
            raise DanceError(f"temperatures must be positive numbers, got {t}")
    for song in songs:
        if not Path(song).is_file():
            raise DanceError(f"song not found: {song}")
    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    codes_file = Path(cfg.run_dir) / CODES_FILE
    if not codes_file.is_file():
        raise DanceError(f"{codes_file} not found: run the GPT stage of that config first")
    windows, _, split = load_windows(cfg.data)
    window_styles = np.array([s or "" for s in windows.styles()])
    with np.load(codes_file) as codes:
        up, down = codes["up"], codes["down"]
    if len(up) != len(windows):
        raise DanceError(f"{codes_file} holds {len(up)} windows but the config gives {len(windows)}: "
                         "run the GPT stage of that config again")

    torch.set_num_threads(1)
    chor = Choreographer(model_dir)
    config_now = chor.model.config
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = []
        for i, song in enumerate(songs):  # the first seconds of each song, as wav
            audio, sr = sf.read(song, dtype="float32", frames=int(seconds * sf.info(song).samplerate))
            clips.append(Path(tmp) / f"song{i}.wav")
            sf.write(clips[-1], audio, sr)
        features = [chor.features(clip) for clip in clips]
        for style in [ANY_STYLE, *config_now.styles]:
            mine = np.ones(len(up), bool) if style == ANY_STYLE else window_styles == style
            takes = [c.joints for c in split.train if style == ANY_STYLE or c.style == style]
            speed_target = style_speed(split.train, style)
            if not mine.any() or speed_target is None:
                continue
            skating_limit = float(np.mean([foot_skating_ratio(j, 60.0) for j in takes]))

            def dance(start: tuple[int, int], temperature: float | None, style: str = style) -> dict[str, Any]:
                options = GenerateOptions(style=style, start_codes=start, rotations=False,
                                          sampling=SamplingOptions(temperature=temperature))
                dances = [chor.generate(clip, options, features=f).joints for clip, f in zip(clips, features)]
                return {"start": [int(c) for c in start], "temperature": temperature,
                        "speed": float(np.mean([mean_joint_speed(j, 60.0) for j in dances])),
                        "skating": float(np.mean([foot_skating_ratio(j, 60.0) for j in dances]))}

            rows = [dance(start, None) for start in candidate_starts(up[mine], down[mine], top)]
            chosen = pick_start(rows, speed_target, skating_limit)
            previous = config_now.start_for(style)
            result[style] = {"chosen": chosen["start"], "previous": list(previous), "training_speed": speed_target,
                             "training_skating": skating_limit, "candidates": rows}
            if temperatures:
                start = (chosen["start"][0], chosen["start"][1])
                tried = [dance(start, float(t)) for t in temperatures]
                result[style]["temperatures"] = tried
                result[style]["temperature"] = pick_temperature(tried, speed_target, skating_limit)["temperature"]
                result[style]["previous_temperature"] = config_now.decoding_for(style).get("temperature")
    default = tuple(result[ANY_STYLE]["chosen"]) if ANY_STYLE in result else config_now.default_start
    style_starts = {s: tuple(r["chosen"]) for s, r in result.items() if s != ANY_STYLE}
    decoding, style_decoding = dict(config_now.decoding), dict(config_now.style_decoding)
    if temperatures:
        if ANY_STYLE in result:
            decoding["temperature"] = result[ANY_STYLE]["temperature"]
        for s, r in result.items():
            if s != ANY_STYLE:
                style_decoding[s] = {**style_decoding.get(s, {}), "temperature": r["temperature"]}
    if write:
        write_config(replace(config_now, default_start=default, style_starts=style_starts, decoding=decoding,
                             style_decoding=style_decoding), model_dir)
    return {"styles": result, "songs": [str(s) for s in songs], "seconds": seconds}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model folder whose default_start to set")
    parser.add_argument("--config", type=Path, required=True,
                        help="the GPT stage config the model came from (its run's window codes and data)")
    parser.add_argument("--song", type=Path, action="append", default=[],
                        help="a training song to dance to (repeatable)")
    parser.add_argument("--top", type=int, default=12, help="candidates: the most common first pairs (default 12)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of each song to dance (default 30)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=None, metavar="T",
                        help="also choose each style's decoding temperature among these (from its chosen start)")
    parser.add_argument("--dry-run", action="store_true", help="measure and print, change nothing")


def run(args: argparse.Namespace) -> int:
    if args.top < 1 or not args.seconds > 0:
        raise DanceError("--top must be at least 1 and --seconds positive")
    result = choose_start(args.model, args.config, args.song, args.top, args.seconds, write=not args.dry_run,
                          temperatures=args.temperatures)
    verb = "would set" if args.dry_run else "set"
    for style, r in result["styles"].items():
        print(f"{style}: training takes' mean joint speed {r['training_speed']:.3f} m/s, "
              f"foot skating {r['training_skating']:.3f}")
        for row in r["candidates"]:
            mark = "  <- chosen" if row["start"] == r["chosen"] else ""
            print(f"  start {tuple(row['start'])}: speed {row['speed']:.3f} m/s, skating {row['skating']:.3f}{mark}")
        what = "default_start" if style == "any" else f"the start of style {style}"
        print(f"{verb} {what} {tuple(r['previous'])} -> {tuple(r['chosen'])} in {args.model}")
        if "temperature" in r:
            for row in r["temperatures"]:
                mark = "  <- chosen" if row["temperature"] == r["temperature"] else ""
                print(f"  temperature {row['temperature']:g}: speed {row['speed']:.3f} m/s, "
                      f"skating {row['skating']:.3f}{mark}")
            print(f"{verb} the temperature of {style} {r['previous_temperature']} -> {r['temperature']:g}")
    return 0
