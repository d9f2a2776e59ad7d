"""Speed of dance-code decoding with the official-size GPT (random weights), per token and per song.

    .venv/bin/python benchmarks/bench_gpt.py [--tokens 64] [--threads 1] [--shifts 20 12] [--approx bfloat16 int8] [--drafts int8]
    .venv/bin/python benchmarks/bench_gpt.py --model assets/default_model --song assets/demo_song.ogg  # a trained model

The weight-reading floor of the model (every linear layer's weights multiplied once by the rows of one
cached step, by the fastest kernel at hand: MKL or oneDNN, 3, 6 or 8 rows) is measured between every two
tokens, and each mode is reported against the floor passes timed alongside its own steady-state tokens
(the ratio of the two sums). A cached mode is also reported against its own products: every product
of one step at the rows it multiplies, through the decoding's own layers (packed, fused), timed in the
same moments. The first ratio is what the weights allow, the second what the step's arithmetic
allows, and what lies above it is attention, norms and Python between the products.

Runs ``sample_codes`` for ``--tokens`` tokens in each mode (and 28 more, untimed: a song's last tokens
are cheaper, as fewer windows are built ahead), times every token through the progress
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models.gpt import CrossCondGPT, GPTConfig  # noqa: E402
from engine.sampling import (  # noqa: E402
    SLOT_WIDTH,
    SamplingOptions,
    WindowSlots,
    approximate_gpt,
    context_window,
    onednn_available,
    onednn_linear,
    onednn_packed,
    onednn_packing_available,
    sample_codes,
    window_slots,
)

OFFICIAL_MS_PER_TOKEN = 140.0
SONG_TOKENS = 1350
N_CONTEXT = 28
TAIL = N_CONTEXT  # tokens decoded after the timed ones (see timed_sample)


def timed_sample(gpt, music: np.ndarray, options: SamplingOptions, period: int) -> dict:
    """Decode ``music`` timing every token; after each token one floor pass (``FLOOR_PASS``) is timed
    too, outside the token's time, so the floor is measured in the same moments as the tokens: on a
    shared machine whose speed drifts by a quarter within seconds, the ratio of the two sums is steady
    where the ratio of separately measured figures is not."""
    token_ms: list[float] = []
    floor_ms: list[float] = []
    step_ms: list[float] = []
    schedule = window_slots(len(music), N_CONTEXT, options.effective_shift()) if options.fast else None
    last = [time.perf_counter()]

    def after_token(done: int, total: int) -> None:
        t0 = time.perf_counter()
        token_ms.append((t0 - last[0]) * 1000.0)
        FLOOR_PASS[0]()
        t1 = time.perf_counter()
        floor_ms.append((t1 - t0) * 1000.0)
        if options.fast and options.draft is None:  # inside the decoding: its own (packed, fused) layers
            step_products(gpt, step_rows(gpt, schedule, done - 1))
            step_ms.append((time.perf_counter() - t1) * 1000.0)
        last[0] = time.perf_counter()

    codes = sample_codes(gpt, *START, music, options, progress=after_token)
    # the timed tokens: not the song's last ones, where the windows a step builds ahead thin out (a window
    # first used after the song's end is never built), which would time the steps of a shorter song's end
    per_token, floors = np.array(token_ms)[: len(music) - TAIL], np.array(floor_ms)[: len(music) - TAIL]
    first = per_token[:N_CONTEXT]
    # steady state: a whole number of re-anchoring periods after the growing phase
    steady_ms, steady_floor = per_token[N_CONTEXT:], floors[N_CONTEXT:]
    keep = len(steady_ms) - len(steady_ms) % period if len(steady_ms) >= period else len(steady_ms)
    steady = float(steady_ms[:keep].mean())
    song_s = (first.sum() + (SONG_TOKENS - N_CONTEXT) * steady) / 1000.0
    step_ratio = (float(steady_ms[:keep].sum() / np.array(step_ms)[N_CONTEXT : len(per_token)][:keep].sum())
                  if step_ms else None)
    return {"codes": codes, "steady_ms": steady, "song_s": song_s, "measured": len(per_token),
            "floor_ratio": float(steady_ms[:keep].sum() / steady_floor[:keep].sum()), "step_ratio": step_ratio}


def step_rows(gpt, schedule: WindowSlots | None, step: int) -> int:
    """The rows cached step ``step`` multiplies: from SLOT_WIDTH on, 3 for each window the schedule feeds
    (at shift 20 three windows, four on one step in nine; at shift 12 one or two), else the current
    window's 3 (plus its whole recomputation when it re-anchors, which this figure leaves out)."""
    return 3 * len(schedule.fed[step]) if schedule is not None and gpt.config.n_embd >= SLOT_WIDTH else 3


def step_products(gpt, rows: int) -> None:
    """The products of one cached step with ``rows`` rows through the model's layers as the running
    decoding has set them up (packed weights, fused query/key/value and GELU where it fuses): the
    arithmetic such a step cannot avoid, without attention, norms or Python between the products."""
    with torch.inference_mode():
        base, head = gpt.gpt_base, gpt.gpt_head
        width = base.cond_emb.out_features
        x = torch.zeros(rows, width, dtype=base.pos_emb.dtype)
        base.cond_emb(torch.zeros(rows, base.cond_emb.in_features, dtype=x.dtype))
        for block in [*base.blocks, *head.blocks]:
            attn = block.attn
            if attn.fused_qkv is not None:
                attn.fused_qkv(x)
            else:
                attn.query(x), attn.key(x), attn.value(x)
            attn.proj(x)
            block.mlp[2](block.mlp[1](block.mlp[0](x)))
        head.head_up(x[: rows // 3]), head.head_down(x[: rows // 3])


BASELINE: dict[str, float] = {}  # ms/token of the exact shift=None mode measured in this run
FLOOR_PASS: list = [lambda: None]  # one pass of the floor's products (set in main)
START = [423, 12]  # the start codes (a trained model's own default start with --model)


def report(name: str, result: dict, reference: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    ratio = OFFICIAL_MS_PER_TOKEN / result["steady_ms"]
    same_run = BASELINE.get("exact", float("nan")) / result["steady_ms"]
    line = (
        f"{name:<38} {result['steady_ms']:7.1f} ms/token  {ratio:5.2f}x official 140 ms  "
        f"{same_run:5.2f}x exact-None this run  {result['floor_ratio']:5.2f}x floor  "
        f"song {result['song_s']:6.1f} s"
    )
    if result.get("step_ratio"):
        line += f"  ({result['step_ratio']:.2f}x its own products)"
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


def weight_floor(gpt: torch.nn.Module, repeats: int = 9) -> tuple[float, Callable[[], None], str]:
    """The least time one cached step can take: every linear layer's weights read once, in the model's
    order, by the fastest way this machine has: the product with the step's 3 rows or with them padded
    to 6 or 8 rows (a kernel's row blocking can make 6 rows faster than 3: packed oneDNN on a Zen 4 EPYC),
    through MKL (F.linear) or oneDNN (the engine's kernel for large models, where torch has it), from
    plain or packed weights. Returns the fastest of ``repeats`` passes (ms), one such pass (to be timed
    between tokens), and which way it was."""
    layers = [m for m in gpt.modules() if isinstance(m, torch.nn.Linear)]
    plain = [m.weight for m in layers]
    kernels = {"MKL": (torch.nn.functional.linear, plain)}
    dtypes = {m.weight.dtype for m in layers}
    if onednn_available() and len(dtypes) == 1 and dtypes <= {torch.float32, torch.bfloat16}:
        kernels["oneDNN"] = (onednn_linear, plain)
        if onednn_packing_available(dtypes.pop()):
            kernels["oneDNN packed"] = (onednn_linear, [onednn_packed(w) for w in plain])
    best, best_pass, best_way = float("inf"), None, ""
    for name, (kernel, weights) in kernels.items():
        for rows in (3, 6, 8):
            inputs = {m.in_features: torch.randn(rows, m.in_features, dtype=m.weight.dtype) for m in layers}

            def one_pass(inputs=inputs, kernel=kernel, weights=weights) -> None:
                with torch.inference_mode():
                    for m, w in zip(layers, weights):
                        kernel(inputs[m.in_features], w, m.bias)

            for _ in range(repeats):
                t0 = time.perf_counter()
                one_pass()
                if (time.perf_counter() - t0) * 1000.0 < best:
                    best, best_pass, best_way = (time.perf_counter() - t0) * 1000.0, one_pass, f"{name}, {rows} rows"
    return best, best_pass, best_way


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
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained model folder instead of random official-size weights")
    parser.add_argument("--song", type=Path, default=None, help="with --model: its music (default: random)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    music = np.random.default_rng(0).standard_normal((args.tokens + TAIL, 438)).astype(np.float32)
    if args.model is not None:
        from engine.generate import Choreographer

        choreographer = Choreographer(args.model)
        gpt = choreographer.model.gpt.eval()
        START[:] = choreographer.model.config.start_for("any")
        if args.song is not None:
            music = choreographer._music(choreographer.features(args.song)).numpy()[: args.tokens + TAIL]
        what = f"{args.model} ({'music of ' + args.song.name if args.song else 'random music'})"
    else:
        gpt = CrossCondGPT(GPTConfig.official()).eval()
        what = "official-size GPT, random weights"
    floor, FLOOR_PASS[0], floor_way = weight_floor(gpt)
    print(
        f"{what}: {gpt.num_parameters() / 1e6:.1f} M parameters; weight-reading floor of one cached step "
        f"{floor:.1f} ms (this run, {floor_way}); "
        f"{args.tokens} tokens per mode (song figures extrapolate the steady state to {SONG_TOKENS}), "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with torch.inference_mode():
        sample_codes(gpt, *START, music[:30], SamplingOptions(shift=20))  # warm-up

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
        report(f"fast (cached), shift={shift}", result, reference)
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
