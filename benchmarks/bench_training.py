"""Training speed of the four stages at the paper's sizes, and data-loading throughput.

    .venv/bin/python benchmarks/bench_training.py [--steps 3] [--cpu-batch 2] [--skip-data]

CPU: a few optimizer steps per stage with a *small batch* (``--cpu-batch``, default 2, instead of the
paper's 32 / 8 / 32 / 128): iterations per second and windows per second. On a GPU (when one exists):
the paper's batch sizes, plain fp32 next to bf16 autocast (AMP). Each step is the stage's own
``loss`` (training.stages.*) plus backward and Adam, on random inputs of the right shapes; the
actor-critic step includes its batch preparation (decoding 28 tokens per window with the VQ-VAE and
computing the beat reward), which is part of every training step there.
Data loading: windows per second cut from the real clips in ../shared/data (gather + root-relative
pose + root velocity), as the VQ-VAE stages do every step.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from engine.models.gpt import CrossCondGPT, GPTConfig
from engine.models.vqvae import SepVQVAE, VQVAEConfig
from training.config import ActorCriticConfig
from training.stages.actor_critic import ActorCritic, ActorCriticStage
from training.stages.common import gather_windows, poses_and_root_velocity
from training.stages.gpt import GPTStage
from training.stages.root import RootStage, RootStep
from training.stages.vqvae import VQVAEStage

PAPER_BATCH = {"vqvae": 32, "root": 8, "gpt": 32, "actor-critic": 128}


def _stage(cls, **attrs):
    stage = object.__new__(cls)  # the loss methods only need these attributes
    for k, v in attrs.items():
        setattr(stage, k, v)
    return stage


def build(stage_name: str, batch: int, device: torch.device):
    """(module, stage, make_batch(step)) for one stage at the paper's sizes."""
    g = torch.Generator().manual_seed(0)
    if stage_name in ("vqvae", "root"):
        vq = SepVQVAE(VQVAEConfig(with_root_decoder=stage_name == "root")).to(device)
        pose = (torch.randn(batch, 240, 72, generator=g) * 0.3).to(device)
        if stage_name == "vqvae":
            return vq, _stage(VQVAEStage), lambda step: pose
        for name, p in vq.named_parameters():
            p.requires_grad_(name.startswith("vqvae_down.decoders_root."))
        vq.codebooks[1].k.normal_()
        velocity = (torch.randn(batch, 240, 3, generator=g) * 0.01).to(device)
        return RootStep(vq), _stage(RootStage), lambda step: (pose, velocity)
    if stage_name == "gpt":
        gpt = CrossCondGPT(GPTConfig()).to(device)
        codes = torch.randint(512, (2, batch, 30), generator=g).to(device)
        music = torch.randn(batch, 30, 438, generator=g).to(device)
        return gpt, _stage(GPTStage), lambda step: (codes[0], codes[1], music, None)  # no style input
    # actor-critic: a 40 s song's rollout already made; batch() samples windows and computes rewards
    gpt = CrossCondGPT(GPTConfig(n_layer_critic=3))
    for name, p in gpt.named_parameters():
        p.requires_grad_(not name.startswith("gpt_base."))
    model = ActorCritic(gpt).to(device)
    vq = SepVQVAE(VQVAEConfig()).to(device).eval()
    vq.codebooks[0].k.normal_()
    vq.codebooks[1].k.normal_()
    n_tokens = 300
    cfg = SimpleNamespace(batch_size=batch, actor_critic=ActorCriticConfig(rollout_every=10**9))
    stage = _stage(ActorCriticStage, cfg=cfg, vqvae=vq, window=30, rollout_epoch=0, num_windows=n_tokens - 29,
                   reference=None,  # no KL term to the GPT before fine-tuning
                   rollout_styles=[("any", 0, (0, 0))], speed_targets={}, rollout_speeds={},  # style "any" only
                   songs=[{"music": np.random.default_rng(0).normal(size=(n_tokens, 438)).astype(np.float32),
                           "beats": np.arange(0, n_tokens * 8, 30)}],
                   codes=[(np.random.default_rng(1).integers(0, 512, n_tokens),
                           np.random.default_rng(2).integers(0, 512, n_tokens))],
                   index=np.array([(0, i) for i in range(n_tokens - 29)]))
    return model, stage, lambda step: stage.batch(step, torch.Generator().manual_seed(step), device)


def time_steps(stage_name: str, batch: int, steps: int, device: torch.device, amp: bool) -> float:
    """Seconds per training step (after one warm-up step)."""
    torch.manual_seed(0)
    model, stage, make_batch = build(stage_name, batch, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-5)

    def one(step: int) -> None:
        data = make_batch(step)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = stage.loss(model, data, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    one(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        one(step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def data_throughput(data_dir: Path, seconds: float = 3.0) -> tuple[float, int] | None:
    from training.data import MotionWindows, load_sources

    if not data_dir.exists():
        return None
    clips = load_sources({"aistpp_csv_dirs": [str(data_dir / "aistpp_slices")],
                          "bvh_paths": [str(data_dir / "cmu_131"), str(data_dir / "cmu_salsa_duet")],
                          "cache_dir": str(Path(__file__).resolve().parents[1] / "runs" / "data_cache")})
    windows = MotionWindows(clips, 240, 8)
    rng = np.random.default_rng(0)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        poses_and_root_velocity(gather_windows(windows, rng.integers(0, len(windows), 32)))
        done += 32
    return done / (time.perf_counter() - t0), len(windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage (after one warm-up)")
    parser.add_argument("--cpu-batch", type=int, default=2, help="batch size on the CPU (paper: 32/8/32/128)")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"\nCPU, paper sizes, batch {args.cpu_batch} (not the paper's batch), {args.steps} steps each:")
    for name in PAPER_BATCH:
        s = time_steps(name, args.cpu_batch, args.steps, torch.device("cpu"), amp=False)
        print(f"  {name:<13} {1 / s:7.3f} it/s  {args.cpu_batch / s:8.2f} windows/s  ({s:.2f} s/step)")
    if torch.cuda.is_available():
        device = torch.device("cuda")
        print(f"\nGPU {torch.cuda.get_device_name(0)}, paper batch sizes, {max(args.steps, 10)} steps each:")
        for name, batch in PAPER_BATCH.items():
            fp32 = time_steps(name, batch, max(args.steps, 10), device, amp=False)
            bf16 = time_steps(name, batch, max(args.steps, 10), device, amp=True)
            print(f"  {name:<13} batch {batch:>3}: fp32 {1 / fp32:7.2f} it/s, bf16 AMP {1 / bf16:7.2f} it/s "
                  f"(x{fp32 / bf16:.2f})")
    else:
        print("\nno GPU here: the AMP comparison runs when torch.cuda.is_available()")
    if not args.skip_data:
        result = data_throughput(args.data)
        if result is None:
            print(f"\ndata loading: {args.data} is absent, skipped")
        else:
            rate, n = result
            print(f"\ndata loading (real clips, {n} windows of 240 frames, stride 8): {rate:,.0f} windows/s")


if __name__ == "__main__":
    main()
