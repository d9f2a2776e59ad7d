"""Command line: ``python -m engine generate|accompany|import-official|info``.

Contract other tools rely on: ``python -m engine generate SONG -o OUTDIR [--model MODEL_DIR]`` writes
``OUTDIR/<song stem>.npz`` (``joints`` (T, 24, 3) world positions in metres, y-up, ``fps``,
``codes_up``, ``codes_down``, ...) and ``OUTDIR/<song stem>.bvh``. Errors are one clear line on
stderr (never a traceback) and nothing is written for that song; what does not depend on the song
(options, output folder, formats, model) is checked before any work. With several songs a failed one
does not stop the others; the exit status is 1 when any failed. Ctrl-C exits 130, SIGTERM 143,
leaving no partial file. ``python -m engine accompany LEADER.npz|LEADER.bvh [--song S] -o OUTDIR`` writes
the follower as ``OUTDIR/<leader stem>_follower.*`` the same way (its NPZ also holds ``leader_joints``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .checkpoint import default_model_dir
from .clock import MOTION_FPS
from .errors import DanceError, InvalidOptionError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _build_parser() -> argparse.ArgumentParser:
    from .options import add_generation_arguments

    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate a dance for one or more songs")
    gen.add_argument("songs", nargs="+", type=Path, help="audio files (wav, mp3, ogg, flac)")
    gen.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    add_generation_arguments(gen)
    gen.add_argument("--formats", default="npz,bvh,json", help="comma-separated subset of npz,bvh,json")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    from .generate import SUPPORTED_FPS

    acc = sub.add_parser("accompany", help="a follower dancing with a leader's dance (the duet)")
    acc.add_argument("leader", type=Path, help="the leader's dance: an .npz or .bvh this engine wrote")
    acc.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    acc.add_argument("--song", type=Path, default=None,
                     help="the music, from the leader's first frame (default: an accompaniment on his beats)")
    acc.add_argument("--model", type=str, default=None, help="model folder with a follower (default: the shipped)")
    acc.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    acc.add_argument("--fps", type=float, default=MOTION_FPS, choices=SUPPORTED_FPS, help="output frame rate")
    acc.add_argument("--greedy", action="store_true", help="always the most likely code")
    acc.add_argument("--temperature", type=float, default=None, help="sample with this temperature")
    acc.add_argument("--seed", type=int, default=None, help="random seed of the sampling")
    acc.add_argument("--threads", type=int, default=None, help="torch threads (default: the engine's policy)")
    acc.add_argument("--formats", default="npz,bvh,json", help="comma-separated subset of npz,bvh,json")
    acc.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    imp = sub.add_parser("import-official", help="convert the official Bailando checkpoints")
    imp.add_argument("experiments", type=Path,
                     help="folder holding sep_vqvae_root/, cc_motion_gpt/ and/or actor_critic/")
    imp.add_argument("-o", "--out", type=Path, required=True, help="model folder to write")

    info = sub.add_parser("info", help="describe a model folder")
    info.add_argument("model", type=Path, nargs="?", default=None)
    return parser


def _generate(args: argparse.Namespace) -> int:
    """Every song in turn; a song that fails gets its error line and the others go on. Everything that
    does not depend on the song (formats, output folder, options, device, model) is checked first."""
    from tqdm import tqdm

    from .dance_files import check_formats, write_dance
    from .files import check_output_folder
    from .generate import Choreographer
    from .options import options_from_args, variation_options, variation_stems

    formats = check_formats(args.formats)
    out_dir = check_output_folder(args.out)
    if args.variations < 1:
        raise InvalidOptionError(f"--variations must be at least 1, got {args.variations}")
    stems: dict[str, Path] = {}
    for song in args.songs:
        for stem in variation_stems(song.stem, args.variations):
            if stem in stems and stems[stem] != song:
                raise InvalidOptionError(f"{stems[stem]} and {song} would both be written as "
                                         f"{out_dir / stem}.*; rename one or run them separately")
            stems[stem] = song
    options = options_from_args(args, rotations="bvh" in formats or "npz" in formats)
    variations = variation_options(options, args.variations)
    choreographer = Choreographer(args.model or default_model_dir(), device=args.device)
    for option_set in variations:
        choreographer.check_options(option_set)

    failed = 0
    for song in args.songs:
        t0 = time.perf_counter()
        try:
            with tqdm(total=1000, desc=song.name, unit="‰", disable=args.quiet, leave=False,
                      bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}") as bar:
                def progress(fraction: float, message: str, bar=bar) -> None:
                    bar.n = int(fraction * 1000)
                    bar.set_postfix_str(message, refresh=False)
                    bar.refresh()

                dances = choreographer.generate_many(song, variations, progress=progress)
            files: dict[str, Path] = {}
            try:  # a song's variations appear together or not at all, as one dance's files do
                for dance, stem in zip(dances, variation_stems(song.stem, len(dances))):
                    written = write_dance(dance, out_dir, stem, formats)
                    files.update({f"{stem}.{kind}": path for kind, path in written.items()})
            except BaseException:
                for path in files.values():
                    path.unlink(missing_ok=True)
                raise
        except DanceError as exc:
            failed += 1
            print(f"error: {song.name}: {exc}" if len(args.songs) > 1 else f"error: {exc}", file=sys.stderr,
                  flush=True)
            continue
        elapsed = time.perf_counter() - t0
        what = f"{len(dances)} dances" if len(dances) > 1 else "dance"
        print(f"{song.name}: {dances[0].duration:.1f} s of {what}, {len(dances[0].codes_up)} tokens, "
              f"{elapsed:.1f} s -> {', '.join(str(p) for p in files.values())}", flush=True)
    if len(args.songs) > 1:
        print(f"{len(args.songs) - failed}/{len(args.songs)} songs done" + (f", {failed} failed" if failed else ""),
              file=sys.stderr if failed else sys.stdout)
    return EXIT_ERROR if failed else 0


def _accompany(args: argparse.Namespace) -> int:
    """The follower of one leader: files ``<leader stem>_follower.*``; the NPZ also holds the leader's
    joints as read (``leader_joints``, at the follower's frame rate, the same world)."""
    from tqdm import tqdm

    from .dance_files import check_formats, read_dance_joints, write_dance
    from .files import check_output_folder
    from .generate import Choreographer, GenerateOptions
    from .postprocess import resample_joints
    from .sampling import SamplingOptions

    formats = check_formats(args.formats)
    out_dir = check_output_folder(args.out)
    greedy = True if args.greedy else (False if args.temperature is not None or args.seed is not None else None)
    options = GenerateOptions(
        sampling=SamplingOptions(greedy=greedy, temperature=args.temperature, seed=args.seed),
        fps=args.fps, rotations="bvh" in formats or "npz" in formats, threads=args.threads)
    options.sampling.check()
    leader = read_dance_joints(args.leader)
    choreographer = Choreographer(args.model or default_model_dir(), device=args.device)
    t0 = time.perf_counter()
    with tqdm(total=1000, desc=args.leader.name, unit="‰", disable=args.quiet, leave=False,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.n = int(fraction * 1000)
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

        follower = choreographer.accompany(leader, song=args.song, options=options, progress=progress)
    leader_out = leader if args.fps == MOTION_FPS else resample_joints(leader, MOTION_FPS, args.fps)
    files = write_dance(follower, out_dir, f"{args.leader.stem}_follower", formats,
                        extra_arrays={"leader_joints": leader_out[: len(follower.joints)].astype(np.float32)})
    print(f"{args.leader.name}: a follower for {len(leader) / MOTION_FPS:.1f} s, {time.perf_counter() - t0:.1f} s "
          f"-> {', '.join(str(p) for p in files.values())}", flush=True)
    return 0


def _import_official(args: argparse.Namespace) -> int:
    from .official import import_official

    out = import_official(args.experiments, args.out)
    print(f"wrote {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from .checkpoint import model_info

    info = model_info(args.model or default_model_dir())
    print(json.dumps(info, indent=2, default=str))
    return 0


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a closing terminal, a batch scheduler) unwinds like Ctrl-C: every ``finally``
    runs, so no hidden partial file stays behind. Only in the main thread (where signals are handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds as Ctrl-C does."""


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    handlers = {"generate": _generate, "accompany": _accompany, "import-official": _import_official, "info": _info}
    try:
        with terminate_as_interrupt():
            return handlers[args.command](args)
    except DanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file system refusal no check foresaw (a disk filling up, a folder vanishing)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot read or write{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        print("terminated" if isinstance(exc, Terminated) else "interrupted",
              ": nothing was written for the song in progress", sep="", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
