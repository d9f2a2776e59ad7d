"""Synthesise the demo song shipped in ``assets/``: a drum-machine track with a steady, clear tempo.

``python assets/make_demo_song.py`` writes ``assets/demo_song.ogg`` (and prints its tempo and length).

The sounds are the ones the default model's GPT was trained with (``engine.accompaniment.synthesise``:
kick and hi-hat on every beat, snare on beats 2 and 4, a bass note per beat and an I-V-vi-IV chord per
bar), so there is one synthesiser in the project. The song is written by the project itself and carries
no third-party rights; the CC-BY songs stay in ../shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from engine.accompaniment import SAMPLE_RATE, synthesise  # noqa: E402

DEMO_BPM = 120.0
DEMO_BARS = 16  # 64 beats: 32 s at 120 bpm
DEMO_LEAD_IN_S = 0.5  # silence before the first beat
DEMO_SONG = REPO_ROOT / "assets" / "demo_song.ogg"


def demo_beat_times(bpm: float = DEMO_BPM, bars: int = DEMO_BARS, lead_in_s: float = DEMO_LEAD_IN_S) -> np.ndarray:
    """Beat times in seconds: four beats per bar at ``bpm`` after ``lead_in_s`` of silence."""
    return lead_in_s + np.arange(4 * bars) * 60.0 / bpm


def make_demo_song(path: str | Path = DEMO_SONG, bpm: float = DEMO_BPM, bars: int = DEMO_BARS) -> Path:
    """Write the demo song (mono OGG Vorbis, 22.05 kHz) to ``path`` atomically; returns the path."""
    import soundfile

    beats = demo_beat_times(bpm, bars)
    duration_s = float(beats[-1] + 60.0 / bpm + 1.0)  # let the last bar ring out
    audio = synthesise(beats, duration_s, SAMPLE_RATE, seed=0)  # (n,) float32 in [-0.9, 0.9]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        soundfile.write(tmp, audio, SAMPLE_RATE, format="OGG", subtype="VORBIS")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=DEMO_SONG, help="file to write (default: %(default)s)")
    parser.add_argument("--bpm", type=float, default=DEMO_BPM, help="tempo (default: %(default)s)")
    parser.add_argument("--bars", type=int, default=DEMO_BARS, help="bars of four beats (default: %(default)s)")
    args = parser.parse_args(argv)
    path = make_demo_song(args.out, args.bpm, args.bars)
    seconds = 4 * args.bars * 60.0 / args.bpm
    print(f"wrote {path}: {args.bpm:g} bpm, {args.bars} bars ({seconds:.0f} s of beats), "
          f"{path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
