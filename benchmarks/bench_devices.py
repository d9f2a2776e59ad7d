"""One song's dance on each device torch has here: generation time and whether the dances agree.

    .venv/bin/python benchmarks/bench_devices.py [--model assets/default_model] [--song assets/demo_song.ogg]
                                                 [--repeats 3] [--variations 4]

The song's features are read once (they do not depend on the device); then, per device (the CPU with
the engine's thread policy, and "cuda" where torch sees a GPU), the median of ``--repeats`` timed runs
after one warm-up of: the engine default dance (seed 0) and ``--variations`` seeded variations in one
batch. Printed per device: seconds, the GPT's share, tokens per second, and the share of codes equal to
the CPU's dance (a seed must make the same dance on every device: ``engine.sampling.sampling_generator``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from engine.generate import Choreographer, GenerateOptions  # noqa: E402
from engine.sampling import SamplingOptions  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up: kernels, caches, lazy initialisation
    times, result = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "assets" / "default_model")
    parser.add_argument("--song", type=Path, default=REPO_ROOT / "assets" / "demo_song.ogg")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variations", type=int, default=4)
    args = parser.parse_args(argv)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    features = Choreographer(args.model).features(args.song)
    one = GenerateOptions(sampling=SamplingOptions(seed=0))
    many = [GenerateOptions(sampling=SamplingOptions(seed=s)) for s in range(1, args.variations + 1)]
    print(f"{args.song.name}: {features.features.shape[0]} tokens; torch {torch.__version__}"
          + (f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "; no GPU"))
    reference: np.ndarray | None = None
    for device in devices:
        engine = Choreographer(args.model, device=device)
        seconds, dance = timed(partial(engine.generate, args.song, one, features=features), args.repeats)
        codes = np.concatenate([dance.codes_up, dance.codes_down])
        reference = codes if reference is None else reference
        gpt_s = dance.meta.get("timings", {}).get("gpt_s")
        batch_s, _ = timed(partial(engine.generate_many, args.song, many, features=features), args.repeats)
        share = f"{gpt_s / seconds:.0%} GPT, " if gpt_s else ""
        print(f"{device:5s} one dance {seconds:6.2f} s ({share}{len(dance.codes_up) / seconds:6.0f} tokens/s, "
              f"threads {dance.meta.get('threads')}); {args.variations} variations in one batch {batch_s:6.2f} s "
              f"({batch_s / seconds:.2f}x one); codes equal to the CPU's {np.mean(codes == reference):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
