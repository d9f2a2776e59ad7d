"""Speed of dance-code decoding with the official-size GPT (random weights), per token and per song.

    .venv/bin/python benchmarks/bench_gpt.py [--tokens 64] [--threads 1] [--shifts 20 12] [--approx bfloat16 int8] [--drafts int8]

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
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models.gpt import CrossCondGPT, GPTConfig  # noqa: E402
from engine.sampling import SamplingOptions, approximate_gpt, context_window, sample_codes  # noqa: E402

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


BASELINE: dict[str, float] = {}  # ms/token of the exact shift=None mode measured in this run


def report(name: str, result: dict, reference: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    ratio = OFFICIAL_MS_PER_TOKEN / result["steady_ms"]
    same_run = BASELINE.get("exact", float("nan")) / result["steady_ms"]
    line = (
        f"{name:<38} {result['steady_ms']:7.1f} ms/token  {ratio:5.2f}x official 140 ms  "
        f"{same_run:5.2f}x exact-None this run  song {result['song_s']:6.1f} s"
    )
    if reference is not None:
        same = np.concatenate([result["codes"][0] == reference[0], result["codes"][1] == reference[1]])
        first_diff = np.flatnonzero(~same[: len(reference[0])] | ~same[len(reference[0]) :])
        line += f"  tokens equal {same.mean() * 100:5.1f} %"
        line += f" (first differs at {first_diff[0]})" if len(first_diff) else ""
    print(line, flush=True)


def same_context_agreement(
    approx, codes: tuple[np.ndarray, np.ndarray], music: np.ndarray, shift: int
) -> float:
    """Share of steps where the approximate model, given the float32 model's own window, picks the same
    (up, down) pair: a per-step figure that does not collapse after the first differing token."""
    up, down = (torch.from_numpy(c)[None] for c in codes)
    frames = torch.from_numpy(music)[None].to(next(approx.parameters()).dtype)
    same = []
    with torch.inference_mode():
        for step in range(len(music)):
            start, _ = context_window(step, N_CONTEXT, shift)
            window = slice(start, step + 1)
            logits_up, logits_down = approx(up[:, window], down[:, window], frames[:, window])
            same.append(
                int(logits_up[0, -1].argmax()) == up[0, step + 1]
                and int(logits_down[0, -1].argmax()) == down[0, step + 1]
            )
    return float(np.mean(same))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens to time per mode (>= 28 + one period)")
    # One thread by default: on this shared 2-core machine a second OpenMP thread mostly waits for a
    # core someone else holds (measured 4x slower under load); try --threads 2 on a quiet machine.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shifts", type=int, nargs="*", default=[20], help="shifts for the fast mode")
    parser.add_argument("--no-exact", action="store_true", help="skip the (slow) exact modes")
    parser.add_argument(
        "--approx", nargs="*", default=["bfloat16", "int8"], help="approximate modes to time (none: --approx)"
    )
    parser.add_argument(
        "--drafts", nargs="*", default=["int8"], help="draft models for draft-checked greedy decoding"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig.official()).eval()
    music = np.random.default_rng(0).standard_normal((args.tokens, 438)).astype(np.float32)
    print(
        f"official-size GPT: {gpt.num_parameters() / 1e6:.1f} M parameters, random weights; "
        f"{args.tokens} tokens per mode (song figures extrapolate the steady state to {SONG_TOKENS}), "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with torch.inference_mode():
        sample_codes(gpt, 423, 12, music[:30], SamplingOptions(shift=20))  # warm-up

    exact_by_shift = {}
    if not args.no_exact:
        result = timed_sample(gpt, music, SamplingOptions(shift=None, fast=False), period=1)
        BASELINE["exact"] = result["steady_ms"]
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
        for kind in args.drafts:
            options = SamplingOptions(shift=shift, fast=True, draft=kind)
            result = timed_sample(gpt, music, options, period=29 - shift)
            report(f"fast + {kind} draft (exact), shift={shift}", result, fast_codes)
        for kind in args.approx:
            approx = approximate_gpt(gpt, kind)
            result = timed_sample(approx, music, SamplingOptions(shift=shift, fast=True), period=29 - shift)
            report(f"fast + {kind} (approx), shift={shift}", result, fast_codes)
            agreement = same_context_agreement(approx, fast_codes, music, shift)
            print(f"{'':<38} same-context agreement with float32: {agreement * 100:5.1f} % of steps")
            del approx


if __name__ == "__main__":
    main()
