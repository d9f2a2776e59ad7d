"""Generation time on an idle and on a loaded machine: the engine's thread policy against torch's default.

    .venv/bin/python benchmarks/bench_threads.py [--song assets/demo_song.ogg] [--repeats 3] [--loads 0 1 2]

For each load (0, 1, 2 background processes that each keep a core busy, started here and stopped after
the measurement) the demo song is danced ``--repeats`` times with the policy (``engine.threads``) and
with torch's default thread count, features cached, the model loaded once. Prints every time and the
ratios to the idle time of the same setting (targets: <= 1.3x with one busy process, <= 2x with two).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.checkpoint import default_model_dir  # noqa: E402
from engine.generate import Choreographer, GenerateOptions  # noqa: E402

SPINNER = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


def spinners(count: int, seconds: float) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPINNER.format(seconds=seconds)]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--song", type=Path, default=REPO / "assets" / "demo_song.ogg")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    default_threads = torch.get_num_threads()
    choreographer = Choreographer(default_model_dir())
    features = choreographer.features(args.song)
    settings = {"policy": None, f"torch default ({default_threads})": default_threads}
    choreographer.generate(args.song, GenerateOptions(rotations=False), features=features)  # warm-up

    print(f"{args.song.name}, {len(features.features)} tokens, model {choreographer.model.config.name}, "
          f"{default_threads} torch threads by default")
    times: dict[tuple[str, int], list[float]] = {}
    for load in args.loads:
        background = spinners(load, seconds=600)
        try:
            time.sleep(0.5)
            for _ in range(args.repeats):
                for name, threads in settings.items():
                    t0 = time.perf_counter()
                    dance = choreographer.generate(args.song, GenerateOptions(threads=threads), features=features)
                    times.setdefault((name, load), []).append(time.perf_counter() - t0)
                    used = dance.meta["threads"]
                    print(f"  load {load}  {name:<22} {times[(name, load)][-1]:7.2f} s  ({used} thread(s))", flush=True)
        finally:
            for proc in background:
                proc.kill()
                proc.wait()
    print("\nmedian (max) seconds and ratio of the median to the idle median of the same setting:")
    for name in settings:
        idle = statistics.median(times[(name, args.loads[0])])
        cells = []
        for load in args.loads:
            values = times[(name, load)]
            cells.append(f"load {load}: {statistics.median(values):6.2f} ({max(values):6.2f}) "
                         f"{statistics.median(values) / idle:5.2f}x")
        print(f"  {name:<22} " + " | ".join(cells))


if __name__ == "__main__":
    main()
