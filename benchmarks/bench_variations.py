"""Variations of one song: N dances decoded as one batch against one dance and N separate runs.

    .venv/bin/python benchmarks/bench_variations.py [--song assets/demo_song.ogg] [--n 4] [--repeats 3]

Prints the time of one dance, of N one after another, and of N as one batch
(``Choreographer.generate_many``), the ratio batch / one, and whether every variation's codes equal its
separate run's, token for token. The music features are computed once beforehand (what a second
Generate in the add-on finds cached); one torch thread, as the engine's thread policy picks for the
default model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--song", type=Path, default=REPO / "assets" / "demo_song.ogg")
    parser.add_argument("--n", type=int, default=4, help="variations (seeds 0..n-1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from engine.checkpoint import default_model_dir
    from engine.generate import Choreographer, GenerateOptions
    from engine.sampling import SamplingOptions

    torch.set_num_threads(1)
    choreographer = Choreographer(args.model or default_model_dir())
    feats = choreographer.features(args.song)
    base = GenerateOptions(threads=1)
    variations = [replace(base, sampling=SamplingOptions(greedy=False, seed=i)) for i in range(args.n)]
    choreographer.generate(args.song, variations[0], features=feats)  # warm-up

    def timed(run):
        best, result = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = run()
            best.append(time.perf_counter() - t0)
        return statistics.median(best), result

    one_s, _ = timed(lambda: choreographer.generate(args.song, variations[0], features=feats))
    separate_s, separate = timed(lambda: [choreographer.generate(args.song, o, features=feats) for o in variations])
    batch_s, batched = timed(lambda: choreographer.generate_many(args.song, variations, features=feats))
    same = all(np.array_equal(a.codes_up, b.codes_up) and np.array_equal(a.codes_down, b.codes_down)
               for a, b in zip(separate, batched))
    tokens = len(batched[0].codes_up)
    print(f"song: {args.song.name}, {tokens} tokens, {args.n} variations, median of {args.repeats}")
    print(f"one dance:              {one_s:6.2f} s")
    print(f"{args.n} one after another:  {separate_s:6.2f} s  ({separate_s / one_s:.2f}x one)")
    print(f"{args.n} as one batch:       {batch_s:6.2f} s  ({batch_s / one_s:.2f}x one, "
          f"{separate_s / batch_s:.2f}x faster than one after another)")
    print(f"token-identical to the separate runs: {same}")


if __name__ == "__main__":
    main()
