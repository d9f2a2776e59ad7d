"""How many threads torch gets for a generation: chosen from the work, not torch's default.

torch's default (one thread per core) is right for large matrix products on an idle machine and wrong
for this engine's usual work. One token of a small GPT is a few hundred microseconds of arithmetic; the
threads of an OpenMP team spend more than that waiting for each other, and when another process keeps
a core busy they wait for it too: measured on a 2-core machine, two threads made the demo song 2.2x to
36x slower than idle with one busy neighbour, one thread 1.02x to 1.31x. So:

- one dance of a small model (``n_embd`` below ``SHARED_WIDTH``) runs on one thread;
- a larger model (the official 768-wide GPT) on as many threads as there are free cores: the cores this
  process may use, less those other processes are running on right now, less ``reserve`` (the add-on
  reserves one for Blender's own threads), and at least one;
- several dances of a small model decoded as one batch (variations) on ``BATCH_THREADS`` threads where
  that many cores are free: a batch's context windows are products of hundreds of rows that two threads
  share well (measured on a 2-core AMD EPYC, idle: 2 threads took 0.99x the time of one for a single
  dance, 0.84x for a batch of 2, 0.81x of 4, 0.73x of 8). Each dance keeps the bits of its one-thread
  run: ``sampling._row_stable_linears`` checks the matrix products; of the other layers only GELU has a
  vectorised and a scalar form that may round differently, and two threads halve its input (rows x 4 x
  width values) into whole vector blocks when the width is a multiple of 16 (the default model: 192).
  More threads are neither measured nor checked;
- ``requested`` (``--threads``, the preferences) overrides the policy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Below this model width one token's matrix products are too small to share between threads.
SHARED_WIDTH = 512
# Threads for a batch of dances of a smaller model (see the module docstring).
BATCH_THREADS = 2


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(samples: int = 5, interval_s: float = 0.01) -> int:
    """How many cores other processes keep busy now: the runnable tasks in ``/proc/loadavg`` (which
    counts the reading thread itself), the median of a few samples; 0 where the file does not exist."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(0, running - 1))
        if i + 1 < samples:
            time.sleep(interval_s)
    return sorted(counts)[len(counts) // 2]


def thread_counts(model_width: int, requested: int | None = None, reserve: int = 0,
                  dances: int = 1) -> tuple[int, int]:
    """(the threads one dance gets alone, the threads for decoding ``dances`` dances at once) with a model
    of width ``model_width`` (see the module docstring); the busy cores are read at most once for both."""
    free: list[int] = []

    def count(n: int) -> int:
        if requested is not None:
            return max(1, int(requested))
        if model_width < SHARED_WIDTH and (n < 2 or model_width % 16):
            return 1
        if not free:
            cores = usable_cores()
            free.append(max(1, min(cores, cores - reserve - busy_cores())))
        return free[0] if model_width >= SHARED_WIDTH else min(free[0], BATCH_THREADS)

    return count(1), count(dances)


def thread_count(model_width: int, requested: int | None = None, reserve: int = 0, dances: int = 1) -> int:
    """The threads for decoding ``dances`` dances at once with a model of width ``model_width``."""
    return thread_counts(model_width, requested, reserve, dances)[1]


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` inside the block, restored after."""
    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
