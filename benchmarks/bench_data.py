"""Data-loading throughput: real BVH and CSV sources, cold (parse + retarget) and warm (cache), and windows.

Run: .venv/bin/python benchmarks/bench_data.py [--shared ../shared]
Prints seconds and frames per second; figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from training.data import MotionWindows, load_bvh_paths, load_csv_dir, split_by_take


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=os.environ.get("DANCE_SHARED", repo.parent / "shared"))
    data = Path(parser.parse_args().shared) / "data"
    if not data.exists():
        raise SystemExit(f"{data} is absent: nothing to measure")
    bvh_dirs = [data / "cmu_salsa_duet", data / "cmu_131"]
    with tempfile.TemporaryDirectory() as cache:
        clips, cold = timed(lambda: load_bvh_paths(bvh_dirs, cache_dir=cache))
        frames = sum(c.num_frames for c in clips)
        print(f"BVH cold  (parse + retarget + cache write): {len(clips)} takes, {frames} frames at 60 fps "
              f"in {cold:.2f} s = {frames / cold:,.0f} frames/s")
        _, warm = timed(lambda: load_bvh_paths(bvh_dirs, cache_dir=cache))
        print(f"BVH warm  (content hash + cache read):      {warm:.3f} s = {frames / warm:,.0f} frames/s "
              f"({cold / warm:.0f}x faster than cold)")
        csv, t_csv = timed(lambda: load_csv_dir(data / "aistpp_slices"))
        print(f"CSV cold  ({len(csv)} slices, 30->60 fps):        {t_csv:.3f} s")
    split = split_by_take(clips + csv, val_fraction=0.1, seed=0)
    for stride in (40, 8):
        ds = MotionWindows(split.train, length=240, stride=stride)
        batch_idx = np.random.default_rng(0).integers(0, len(ds), size=(50, 32))
        _, t = timed(lambda ds=ds, batch_idx=batch_idx: [np.stack([ds[int(i)]["joints"] for i in b])
                                                         for b in batch_idx])
        print(f"windows 240/{stride}: {len(ds)} train windows ({len(split.val)} val clips); "
              f"batches of 32: {50 / t:,.0f} batches/s")


if __name__ == "__main__":
    main()
