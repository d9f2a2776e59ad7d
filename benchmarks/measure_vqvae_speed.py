"""How much of the real takes' speed a VQ-VAE keeps: every take encoded to codes and decoded back.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_vqvae_speed.py [--model assets/default_model] [--run RUN ...]

A dance can move no faster than its codes decode to: the GPT picks codes, the VQ-VAE turns them into
poses. For each style and split (training takes / held out, ``--config``'s split), the mean joint
speed of the root-relative poses (the root velocity has a decoder of its own) as captured and after
encode -> decode, their ratio, the reconstruction error (MPJPE, cm) and the decoded mean jerk against the
captured (a decoder that bought speed with jitter would show it here). ``--model`` a model folder's
VQ-VAE, ``--run`` the VQ-VAE of a ``vqvae``, ``root`` or ``decoder`` training run (several: to compare runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def reconstruction_by_style(vqvae, split) -> dict[tuple[str, str], dict[str, float]]:
    """{(style, "train" | "held out"): speed as captured, decoded, ratio, MPJPE cm, frames}."""
    import torch

    from training.metrics.physical import jitter, mean_joint_speed
    from training.stages.common import poses_and_root_velocity

    held = {id(c) for c in split.val}
    sums: dict[tuple[str, str], np.ndarray] = {}
    for clip in split.train + split.val:
        t = clip.num_frames // 8 * 8  # whole codes
        if t < 64:
            continue
        pose, _ = poses_and_root_velocity(clip.joints[None, :t])  # (1, t, 72): root velocity, 23 joints
        with torch.inference_mode():
            decoded = vqvae.decode(*vqvae.encode(torch.from_numpy(pose))).float().numpy()[0]
        real, back = pose[0, :, 3:].reshape(t, 23, 3), decoded[:, 3:].reshape(t, 23, 3)
        error_cm = float(np.linalg.norm(back - real, axis=-1).mean()) * 100  # over the 23 joints
        pelvis = np.zeros((t, 1, 3), dtype=real.dtype)  # the root-relative skeleton, pelvis at the origin
        real, back = np.concatenate([pelvis, real], 1), np.concatenate([pelvis, back], 1)
        row = np.array([mean_joint_speed(real, 60), mean_joint_speed(back, 60), error_cm, 1.0,
                        jitter(real, 60), jitter(back, 60)]) * t
        key = (clip.style or "?", "held out" if id(clip) in held else "train")
        sums[key] = sums.get(key, np.zeros(6)) + row
    return {key: {"real_m_s": s[0] / s[3], "decoded_m_s": s[1] / s[3], "ratio": s[1] / s[0],
                  "mpjpe_cm": s[2] / s[3], "frames": int(s[3]), "jerk_ratio": s[5] / s[4]}
            for key, s in sorted(sums.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", default=[], help="a model folder")
    parser.add_argument("--run", type=Path, action="append", default=[], help="a vqvae, root or decoder training run")
    parser.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "default_vqvae.yaml",
                        help="the config whose data and held-out split to use")
    args = parser.parse_args()

    import torch

    from engine.checkpoint import default_model_dir, load_model
    from training.config import load_config
    from training.data.sources import load_split
    from training.stages.common import vqvae_from_run

    torch.set_num_threads(1)
    split = load_split(load_config(args.config).data)
    vqvaes = {f"run {run}": vqvae_from_run(run) for run in args.run}
    for model in args.model or ([] if args.run else [default_model_dir()]):
        vqvaes[f"model {model}"] = load_model(model).vqvae.eval()
    for name, vqvae in vqvaes.items():
        print(name)
        for (style, part), r in reconstruction_by_style(vqvae, split).items():
            print(f"  {style:7} {part:8} {r['frames'] / 3600:5.2f} min  root-relative speed {r['real_m_s']:.2f} m/s "
                  f"as captured, {r['decoded_m_s']:.2f} decoded ({r['ratio']:.2f}x)  MPJPE {r['mpjpe_cm']:4.1f} cm  "
                  f"jerk {r['jerk_ratio']:.2f}x")


if __name__ == "__main__":
    main()
