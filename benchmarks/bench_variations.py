"""Variations of one song: N dances decoded as one batch against one dance and N separate runs.

    .venv/bin/python benchmarks/bench_variations.py [--song assets/demo_song.ogg] [--n 4] [--repeats 7] [--busy K]

Prints the time of one dance, of N one after another, and of N as one batch
(``Choreographer.generate_many``), the ratio batch / one (one dance and the batch timed in turns; the
median of the turns' ratios and the fastest of each), and whether every variation's codes equal its
separate run's, token for token. The music features are computed once beforehand (what a second
Generate in the add-on finds cached). Threads as the engine's policy picks them (``engine.threads``:
for the default model one for a dance, two for a batch's GPT where two cores are free; the threads
used are printed), or ``--threads N`` for both. ``--busy K`` keeps K cores busy with background
processes (``bench_threads.spinners``) while it measures.
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--repeats", type=int, default=7, help="turns of one dance and the batch")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for everything (default: the policy)")
    parser.add_argument("--busy", type=int, default=0, help="background processes keeping a core busy each")
    args = parser.parse_args()

    import numpy as np
    from bench_threads import spinners

    from engine.checkpoint import default_model_dir
    from engine.generate import Choreographer, GenerateOptions
    from engine.sampling import SamplingOptions

    choreographer = Choreographer(args.model or default_model_dir())
    feats = choreographer.features(args.song)
    base = GenerateOptions(threads=args.threads)
    variations = [replace(base, sampling=SamplingOptions(greedy=False, seed=i)) for i in range(args.n)]
    choreographer.generate(args.song, variations[0], features=feats)  # warm-up

    def timed(run):
        t0 = time.perf_counter()
        result = run()
        return time.perf_counter() - t0, result

    # One dance and the batch measured in turns, so that a slow spell of the machine (other processes,
    # a neighbour on a shared host) falls on both alike; one after another once (only for the 4x line).
    background = spinners(args.busy, seconds=900)
    try:
        time.sleep(0.5 if args.busy else 0)
        separate_s, separate = timed(lambda: [choreographer.generate(args.song, o, features=feats)
                                              for o in variations])
        ones, batches, ratios = [], [], []
        for _ in range(args.repeats):
            one_s, _ = timed(lambda: choreographer.generate(args.song, variations[0], features=feats))
            batch_s, batched = timed(lambda: choreographer.generate_many(args.song, variations, features=feats))
            ones.append(one_s)
            batches.append(batch_s)
            ratios.append(batch_s / one_s)
    finally:
        for process in background:
            process.kill()
            process.wait()
    one_s, batch_s = statistics.median(ones), statistics.median(batches)
    same = all(np.array_equal(a.codes_up, b.codes_up) and np.array_equal(a.codes_down, b.codes_down)
               for a, b in zip(separate, batched))
    tokens = len(batched[0].codes_up)
    print(f"song: {args.song.name}, {tokens} tokens, {args.n} variations, {args.repeats} turns of one dance "
          f"and the batch; {args.busy} busy background processes; load average {os.getloadavg()[0]:.1f}; threads: one dance {separate[0].meta['threads']}, "
          f"the batch's GPT {batched[0].meta['timings']['gpt_threads']} (the last turn)")
    print(f"one dance:              {one_s:6.2f} s  (median; fastest {min(ones):.2f} s)")
    print(f"{args.n} one after another:  {separate_s:6.2f} s  ({separate_s / one_s:.2f}x one)")
    print(f"{args.n} as one batch:       {batch_s:6.2f} s  (median; fastest {min(batches):.2f} s)")
    print(f"batch / one: median of the turns {statistics.median(ratios):.2f}x (each turn: "
          f"{' '.join(f'{r:.2f}' for r in ratios)}), fastest against fastest {min(batches) / min(ones):.2f}x")
    print(f"token-identical to the separate runs: {same}")


if __name__ == "__main__":
    main()
