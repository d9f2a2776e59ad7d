"""Speed of dance-code decoding with the official-size GPT (random weights), per token and per song.

    .venv/bin/python benchmarks/bench_gpt.py [--tokens 64] [--threads 2] [--shifts 20 12] [--approx bfloat16 int8]

Runs ``sample_codes`` for ``--tokens`` tokens in each mode, times every token through the progress
callback, and extrapolates to a 3-minute song (1,350 tokens at 7.5 tokens/s): the first 28 tokens
(growing window) are timed as they are, the rest at the steady-state mean of the measured tokens
after the 28th (a whole number of re-anchoring periods for the fast mode). The official sampler runs
140 ms per token on this 2-core machine (189 s of GPT time for 1,350 tokens); ratios are against that.

Random weights give near-uniform logits, so the share of tokens an approximate mode keeps is a
pessimistic stand-in for trained weights. Figures are disturbed by whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models.gpt import CrossCondGPT, GPTConfig  # noqa: E402
from engine.sampling import SamplingOptions, approximate_gpt, sample_codes  # noqa: E402

OFFICIAL_MS_PER_TOKEN = 140.0
SONG_TOKENS = 1350
N_CONTEXT = 28


def timed_sample(gpt, music: np.ndarray, options: SamplingOptions, period: int) -> dict:
    stamps: list[float] = []
    start = time.perf_counter()
    codes = sample_codes(
        gpt, 423, 12, music, options, progress=lambda done, total: stamps.append(time.perf_counter())
    )
    per_token = np.diff([start] + stamps) * 1000.0  # ms for each token
    first = per_token[:N_CONTEXT]
    # steady state: a whole number of re-anchoring periods after the growing phase
    tail = per_token[N_CONTEXT:]
    tail = tail[: len(tail) - len(tail) % period] if len(tail) >= period else tail
    steady = float(tail.mean())
    song_s = (first.sum() + (SONG_TOKENS - N_CONTEXT) * steady) / 1000.0
    return {"codes": codes, "steady_ms": steady, "song_s": song_s, "measured": len(per_token)}


def report(name: str, result: dict, reference: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    ratio = OFFICIAL_MS_PER_TOKEN / result["steady_ms"]
    line = (
        f"{name:<34} {result['steady_ms']:8.1f} ms/token  {ratio:5.2f}x official  "
        f"song {result['song_s']:6.1f} s (extrapolated from {result['measured']} tokens)"
    )
    if reference is not None:
        same = np.concatenate([result["codes"][0] == reference[0], result["codes"][1] == reference[1]])
        first_diff = np.flatnonzero(~same[: len(reference[0])] | ~same[len(reference[0]) :])
        line += f"  tokens equal {same.mean() * 100:5.1f} %"
        line += f" (first differs at {first_diff[0]})" if len(first_diff) else ""
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens to time per mode (>= 28 + one period)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--shifts", type=int, nargs="*", default=[20], help="shifts for the fast mode")
    parser.add_argument("--no-exact", action="store_true", help="skip the (slow) exact modes")
    parser.add_argument(
        "--approx", nargs="*", default=["bfloat16", "int8"], help="approximate modes to time (none: --approx)"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig.official()).eval()
    music = np.random.default_rng(0).standard_normal((args.tokens, 438)).astype(np.float32)
    print(
        f"official-size GPT: {gpt.num_parameters() / 1e6:.1f} M parameters, random weights; "
        f"{args.tokens} tokens per mode, {torch.get_num_threads()} threads, torch {torch.__version__}",
        flush=True,
    )
    with torch.inference_mode():
        sample_codes(gpt, 423, 12, music[:30], SamplingOptions(shift=20))  # warm-up

    exact_by_shift = {}
    if not args.no_exact:
        result = timed_sample(gpt, music, SamplingOptions(shift=None, fast=False), period=1)
        report("exact, shift=None (official default)", result)
        for shift in args.shifts:
            exact_by_shift[shift] = timed_sample(
                gpt, music, SamplingOptions(shift=shift, fast=False), 29 - shift
            )
            report(f"exact, shift={shift}", exact_by_shift[shift])
    for shift in args.shifts:
        result = timed_sample(gpt, music, SamplingOptions(shift=shift, fast=True), period=29 - shift)
        reference = exact_by_shift[shift]["codes"] if shift in exact_by_shift else None
        report(f"fast (KV cache), shift={shift}", result, reference)
        fast_codes = result["codes"]
        for kind in args.approx:
            approx = approximate_gpt(gpt, kind)
            result = timed_sample(approx, music, SamplingOptions(shift=shift, fast=True), period=29 - shift)
            report(f"fast + {kind} (approx), shift={shift}", result, fast_codes)
            del approx


if __name__ == "__main__":
    main()
