"""Speed of the engine's non-GPT steps at the official size: VQ-VAE decode, root integration, rotations.

    .venv/bin/python benchmarks/bench_generate.py [--tokens 1350] [--threads 2]

A 3-minute song is 1,350 tokens at 7.5 tokens/s (10,800 frames at 60 fps). Target for decoding
1,350 tokens with the official-size VQ-VAE (random weights) on this 2-core CPU: <= 2.5 s (the
official code takes 2.3 s). The GPT has its own benchmark (bench_gpt.py), the features theirs
(bench_features.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.joint_rotations import solve_rotations  # noqa: E402
from engine.models.vqvae import SepVQVAE, VQVAEConfig, integrate_root  # noqa: E402
from engine.postprocess import ground_feet  # noqa: E402

DECODE_TARGET_S = 2.5
OFFICIAL_DECODE_S = 2.3


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1350)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    vqvae = SepVQVAE(VQVAEConfig()).eval()  # official size: width 512, 512 codes of 512 dims
    for book in vqvae.codebooks:
        book.k.normal_(std=0.1)
    up = torch.randint(0, 512, (1, args.tokens))
    down = torch.randint(0, 512, (1, args.tokens))

    with torch.inference_mode():
        best_of(lambda: vqvae.decode(up[:, :16], down[:, :16]), 1)  # warm-up
        t_decode, decoded = best_of(lambda: vqvae.decode(up, down), args.repeats)
    t_root, joints = best_of(lambda: integrate_root(decoded)[0].numpy(), args.repeats)
    # Random weights decode to noise-sized poses; scale them into a human-sized range for the solver.
    joints = np.asarray(joints, dtype=np.float64)
    t_ground, grounded = best_of(lambda: ground_feet(joints), args.repeats)
    t_rot, _ = best_of(lambda: solve_rotations(grounded), args.repeats)

    frames = args.tokens * 8
    print(f"tokens {args.tokens} -> frames {frames} at 60 fps ({frames / 60:.0f} s of dance), "
          f"threads {args.threads}")
    print(f"VQ-VAE decode (official size): {t_decode:.2f} s  "
          f"(target <= {DECODE_TARGET_S} s: {t_decode / DECODE_TARGET_S:.2f}x of budget; "
          f"official code {OFFICIAL_DECODE_S} s: ratio {t_decode / OFFICIAL_DECODE_S:.2f})")
    print(f"root integration: {t_root * 1000:.1f} ms")
    print(f"ground feet:      {t_ground * 1000:.1f} ms")
    print(f"solve rotations:  {t_rot:.2f} s ({frames / t_rot:,.0f} frames/s)")


if __name__ == "__main__":
    main()
