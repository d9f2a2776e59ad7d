"""Keying a 3-minute dance (10,800 frames at 60 fps, 24 bones) onto the SMPL armature with its mesh.

Prints the time of ``apply_dance`` (bulk ``foreach_set``) against the 1 s target, and, for scale,
``keyframe_insert`` per bone per frame on a short slice, extrapolated to the full dance.

    .venv/bin/python benchmarks/bench_keyframes.py [--frames 10800] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpy  # noqa: E402

from addon.blender import armature, keyframes  # noqa: E402
from engine import rotation, skeleton  # noqa: E402
from engine.dance import Dance  # noqa: E402

TARGET_S = 1.0


def random_dance(num_frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)[:, None, None] / 60.0
    freq = rng.uniform(0.3, 2.0, size=(24, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(24, 3))
    aa = 0.6 * np.sin(2 * np.pi * freq * t + phase)  # (T, 24, 3)
    quats = rotation.matrix_to_quaternion(rotation.axis_angle_to_matrix(aa))
    translation = np.stack([np.sin(t[:, 0, 0]), np.full(num_frames, 1.0), np.cos(t[:, 0, 0])], axis=1)
    return quats, translation


def bench_bulk(quats, translation, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=True)
        start = time.perf_counter()
        keyframes.apply_dance(obj, Dance(joints=np.zeros((len(quats), 24, 3)), fps=60, rotations=quats,
                                         translation=translation, rest_joints=skeleton.REST_JOINTS), "song")
        times.append(time.perf_counter() - start)
    return min(times)


def bench_keyframe_insert(quats, translation, frames: int) -> float:
    """The naive way, per bone per frame, on ``frames`` frames."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=True)
    start = time.perf_counter()
    for f in range(frames):
        for j, name in enumerate(skeleton.JOINT_NAMES):
            pose_bone = obj.pose.bones[name]
            pose_bone.rotation_quaternion = quats[f, j].tolist()
            pose_bone.keyframe_insert("rotation_quaternion", frame=f + 1)
        obj.pose.bones["pelvis"].location = translation[f].tolist()
        obj.pose.bones["pelvis"].keyframe_insert("location", frame=f + 1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-frames", type=int, default=300, help="frames for the keyframe_insert baseline")
    args = parser.parse_args()

    quats, translation = random_dance(args.frames)
    bulk = bench_bulk(quats, translation, args.repeats)
    keys = args.frames * (24 * 4 + 3)
    print(f"bpy {bpy.app.version_string}, {args.frames} frames x 24 bones (+ mesh), {keys:,} keys")
    print(f"apply_dance (foreach_set): {bulk:.3f} s (best of {args.repeats}); "
          f"target {TARGET_S:.1f} s -> ratio {bulk / TARGET_S:.2f} of target, {keys / bulk / 1e6:.1f} M keys/s")
    naive = bench_keyframe_insert(quats, translation, args.naive_frames)
    naive_full = naive * args.frames / args.naive_frames
    print(f"keyframe_insert: {naive:.3f} s for {args.naive_frames} frames -> ~{naive_full:.1f} s for "
          f"{args.frames} (extrapolated); bulk is ~{naive_full / bulk:.0f}x faster")


if __name__ == "__main__":
    main()
