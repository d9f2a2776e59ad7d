"""The thread policy: small models on one thread, large ones on the free cores, an override, restored after."""

from __future__ import annotations

import pytest
import torch

from engine import threads
from engine.errors import InvalidOptionError
from engine.generate import GenerateOptions


def test_small_models_run_on_one_thread_large_ones_on_the_free_cores(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 3)
    assert threads.thread_count(192) == 1  # the default model
    assert threads.thread_count(768) == 5  # the official GPT: 8 cores, 3 busy
    assert threads.thread_count(768, reserve=1) == 4  # Blender keeps one
    monkeypatch.setattr(threads, "busy_cores", lambda: 12)
    assert threads.thread_count(768) == 1  # never fewer than one
    assert threads.thread_count(192, requested=3) == 3  # --threads overrides


def test_a_batch_of_a_small_models_dances_shares_two_free_cores(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 3)
    assert threads.thread_count(192, dances=4) == threads.BATCH_THREADS == 2
    assert threads.thread_count(192, dances=1) == 1  # one dance: one thread, as before
    assert threads.thread_count(200, dances=4) == 1  # a width GELU's halves would split mid-vector
    assert threads.thread_count(768, dances=4) == 5  # a large model: the free cores, batch or not
    assert threads.thread_count(192, reserve=4, dances=4) == 1  # Blender's core and the busy ones
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 1)
    assert threads.thread_count(192, dances=4) == 1  # a loaded 2-core machine: one thread
    reads = []
    monkeypatch.setattr(threads, "busy_cores", lambda: reads.append(1) or 0)
    assert threads.thread_counts(768, dances=4) == (2, 2) and len(reads) == 1  # the load read once for both
    assert threads.thread_counts(192, dances=4) == (1, 2) and len(reads) == 2


def test_busy_cores_sees_a_process_that_keeps_a_core_busy():
    import subprocess
    import sys

    if not __import__("os").path.exists("/proc/loadavg"):
        pytest.skip("no /proc/loadavg")
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 20\nwhile time.time() < end: pass"])
    try:
        import time

        time.sleep(0.5)
        assert threads.busy_cores(samples=7) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_generation_pins_the_chosen_threads_and_restores_torchs(tiny_model_dir, short_song, monkeypatch):
    from engine.generate import Choreographer

    seen = []
    real = Choreographer._generate

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Choreographer, "_generate", spy)
    choreographer = Choreographer(tiny_model_dir)
    song = short_song(2.5)
    before = torch.get_num_threads()
    dance = choreographer.generate(song, GenerateOptions(rotations=False))
    assert seen == [1] and dance.meta["threads"] == 1 and torch.get_num_threads() == before
    dance = choreographer.generate(song, GenerateOptions(rotations=False, threads=2))
    assert seen[-1] == 2 and dance.meta["threads"] == 2 and torch.get_num_threads() == before
    with pytest.raises(InvalidOptionError, match="threads"):
        choreographer.generate(song, GenerateOptions(threads=0))
