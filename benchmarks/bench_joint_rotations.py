"""Speed of the positions -> rotations solver on a 3-minute dance (10,800 frames at 60 fps).

    .venv/bin/python benchmarks/bench_joint_rotations.py [--frames 10800] [--repeats 3]

Uses random SMPL poses with bent knees/elbows (the hinge code path runs on every frame).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.joint_rotations import solve_rotations  # noqa: E402
from engine.skeleton import forward_kinematics_matrices  # noqa: E402
from tests.engine.poses import random_smpl_poses  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_800)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    joints, _ = forward_kinematics_matrices(random_smpl_poses(args.frames, seed=0))  # (T, 24, 3)
    solve_rotations(joints[:100])  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        solve_rotations(joints)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"solve_rotations: {args.frames} frames in {best:.3f} s (best of {args.repeats}; "
          f"all {', '.join(f'{t:.3f}' for t in times)} s) -> {args.frames / best:,.0f} frames/s")


if __name__ == "__main__":
    main()
