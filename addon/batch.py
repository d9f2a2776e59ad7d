"""Headless batch: a dance video (and FBX) for each song.

    python -m addon.batch SONG... -o OUTDIR [--model DIR] [--engine workbench|cycles|eevee] [--fbx]
    blender -b -P addon/batch.py -- SONG... -o OUTDIR [...]

For each song: a fresh scene, the engine's dance keyed on a new SMPL armature with a body mesh, the
song as a sound strip, then ``OUTDIR/<song stem>.mp4`` (and ``.fbx``). One summary line per song; the
exit status is 1 when any song failed, after every other song was still done.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: blender -b -P addon/batch.py -- ...
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import addon.batch

    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    sys.exit(addon.batch.main(argv))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

ENGINES = ("workbench", "cycles", "eevee")
EXIT_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    from . import _engine

    parser = argparse.ArgumentParser(prog="python -m addon.batch", description=__doc__.splitlines()[0])
    parser.add_argument("songs", nargs="+", type=Path, help="audio files (wav, mp3, ogg, flac)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    _engine.options.add_generation_arguments(parser, fps=30.0)  # the engine CLI's flags
    parser.add_argument("--engine", choices=ENGINES, default="workbench", help="render engine")
    parser.add_argument("--fbx", action="store_true", help="also write <song stem>.fbx (song copied beside)")
    parser.add_argument("--resolution", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
    parser.add_argument("--duet", action="store_true",
                        help="a partner for each dance (the model's follower), both dancers in one MP4")
    return parser


def render_song(choreographer_args: tuple[Path, str], song: Path, args: argparse.Namespace,
                options: Any) -> list[Path]:
    """One song -> its files in ``args.out``. Raises a ``DanceError`` (or a bug) on failure."""
    import bpy

    from . import _engine
    from .blender import partner as bl_partner
    from .blender import render as bl_render
    from .blender import rig_export
    from .ui import core

    song = core.check_song(song)
    model_dir, device = choreographer_args
    variations = _engine.options.variation_options(options, args.variations)
    dances = core.generate_dances(model_dir, device, song, variations)  # one batch through the GPT
    partners = [core.get_choreographer(model_dir, device).accompany(d, song=song, options=o)
                for d, o in zip(dances, variations)] if args.duet else [None] * len(dances)
    files = []
    for dance, partner, stem in zip(dances, partners, _engine.options.variation_stems(song.stem, len(dances))):
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        assert scene is not None  # a fresh home file always has one
        obj = core.apply_dances(scene, [dance], song, with_mesh=True).armature
        dancers = obj
        if partner is not None:
            dancers = [obj, bl_partner.add_follower(scene, partner, f"{obj.name} partner", 1.0, scene.frame_start)]
        mp4 = args.out / f"{stem}.mp4"
        bl_render.render_mp4(scene, mp4, args.engine.upper(), tuple(args.resolution), str(song), dancer=dancers)
        files.append(mp4)
        if args.fbx:
            fbx = args.out / f"{stem}.fbx"
            rig_export.export_fbx(obj, fbx, song_path=str(song))
            files.append(fbx)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import _engine

    cli = _engine.cli
    try:
        with cli.terminate_as_interrupt():  # SIGTERM unwinds like Ctrl-C: no partial file stays
            return _checked_run(args)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, cli.Terminated)
        print(f"{'terminated' if terminated else 'interrupted'}: nothing was written for the song in progress",
              file=sys.stderr)
        return cli.EXIT_TERMINATED if terminated else cli.EXIT_INTERRUPTED


def _checked_run(args: argparse.Namespace) -> int:
    """Check everything that does not depend on a song (output folder, options, model) before any work
    and before the output folder is made; then render every song."""
    from . import _engine
    from .ui import core

    try:
        args.out = _engine.files.check_output_folder(args.out)
        if args.variations < 1:
            raise _engine.errors.InvalidOptionError(f"--variations must be at least 1, got {args.variations}")
        options = _engine.options.options_from_args(args)
        model_dir = core.resolve_model_dir(args.model)
        core.get_choreographer(model_dir, args.device).check_options(options)  # load once, fail early
        args.out.mkdir(parents=True, exist_ok=True)
    except _engine.errors.DanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: cannot create {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return _render_all(args, model_dir, options)


def _render_all(args: argparse.Namespace, model_dir: Path, options: Any) -> int:
    from . import _engine

    errors = _engine.errors
    failed = 0
    for song in args.songs:
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # exporters' chatter; stdout keeps the summary
                files = render_song((model_dir, args.device), song, args, options)
        except errors.DanceError as exc:
            failed += 1
            print(f"{song.name}: FAILED: {exc}", flush=True)
            continue
        except Exception as exc:  # a bug: keep going with the other songs, show where it happened
            failed += 1
            traceback.print_exc()
            print(f"{song.name}: FAILED unexpectedly: {type(exc).__name__}: {exc}", flush=True)
            continue
        print(f"{song.name}: ok in {time.perf_counter() - t0:.1f} s -> {', '.join(str(f) for f in files)}",
              flush=True)
    done = len(args.songs) - failed
    print(f"{done}/{len(args.songs)} songs done" + (f", {failed} failed" if failed else ""), flush=True)
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
