"""What this CPU can do at best for one official-size GPT step: the floors under the sampler's speed.

    .venv/bin/python benchmarks/bench_cpu_floor.py [--threads 1 2]

Times bare float32 matrix products over the weight shapes of the official GPT's 12 blocks (87 M
parameters, 340 MB): with 3 rows (one cached step: a music, an up and a down token) the time is the
cost of reading every weight once (memory bandwidth); with 84 rows (one full 28-token window of the
official sampler) it is the compute floor. An exact float32 step cannot be faster than these. Each
through MKL (F.linear) and, where torch has it, oneDNN (the engine's kernel for large models) from plain
and from packed weights (``engine.sampling.onednn_packed``); 9 rows
is what the engine's cached step at shift 20 multiplies (three windows, ``engine.sampling.window_slots``).
6 rows shows where a kernel's row blocking lies: on a 2-core AMD EPYC (Zen 4) packed oneDNN multiplies 6
rows faster than 3 and 9 rows a third slower than 6, so the arithmetic of 9 rows no longer hides under
the weight read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.sampling import onednn_available, onednn_linear, onednn_packed, onednn_packing_available  # noqa: E402

N_EMBD, N_LAYERS = 768, 12
WINDOW_ROWS = 3 * 28  # music + up + down tokens of a full context window
CACHED_ROWS = 3  # one new time step of each stream


def block_weights() -> list[torch.Tensor]:
    """q, k, v, proj (768x768) and the MLP (768->3072->768) of each of the 12 blocks."""
    weights = []
    for _ in range(N_LAYERS):
        weights += [torch.randn(N_EMBD, N_EMBD) for _ in range(4)]
        weights += [torch.randn(4 * N_EMBD, N_EMBD), torch.randn(N_EMBD, 4 * N_EMBD)]
    return weights


def time_products(weights: list[torch.Tensor], rows: int, repeats: int = 4, onednn: bool = False) -> float:
    """Best of ``repeats`` passes multiplying ``rows`` rows by every weight (packed ones through oneDNN)."""
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1]) for w in weights}
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            for w in weights:
                if onednn:
                    onednn_linear(inputs[w.shape[1]], w, None)
                else:
                    torch.nn.functional.linear(inputs[w.shape[1]], w)
            best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    weights = block_weights()
    megabytes = sum(w.numel() for w in weights) * 4 / 1e6
    flops_window = 2 * WINDOW_ROWS * sum(w.numel() for w in weights)
    kernels = {"MKL": (False, weights), **({"oneDNN": (True, weights)} if onednn_available() else {})}
    if onednn_packing_available():
        kernels["oneDNN packed"] = (True, [onednn_packed(w) for w in weights])
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (onednn, ws) in kernels.items():
            cached = time_products(ws, CACHED_ROWS, onednn=onednn)
            two_windows = time_products(ws, 2 * CACHED_ROWS, onednn=onednn)
            slots = time_products(ws, 3 * CACHED_ROWS, onednn=onednn)
            window = time_products(ws, WINDOW_ROWS, onednn=onednn)
            print(f"{threads} thread(s), {name:13}: cached step (3 rows) {cached * 1000:6.1f} ms = "
                  f"{megabytes / 1000 / cached:4.1f} GB/s over {megabytes:.0f} MB of weights | 6 rows "
                  f"{two_windows * 1000:6.1f} ms | 9 rows "
                  f"{slots * 1000:6.1f} ms | full window (84 rows) {window * 1000:6.1f} ms = "
                  f"{flops_window / window / 1e9:5.1f} GFLOPS")
    print("targets: exact window mode 140 ms/token, fast cached mode 23 ms/token "
          "(an exact float32 step cannot beat the floors above)")


if __name__ == "__main__":
    main()
