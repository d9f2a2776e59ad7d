"""The training package on a CUDA GPU: the loop with AMP, a resume that repeats the unbroken run, every
stage of the chain on the real data, and weights that load and dance on a CPU.

Skipped where torch sees no CUDA device (CI has none); on a GPU machine: ``pytest tests/training/test_cuda.py``.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from engine.checkpoint import load_model
from engine.generate import Choreographer, GenerateOptions
from engine.sampling import SamplingOptions
from tests.training.test_stages import tiny_config
from tests.training.test_trainer import OPTIM, RegressionStage
from training.cli import main as training_main
from training.stages.actor_critic import ActorCriticStage
from training.stages.common import train_stage
from training.stages.decoder import DecoderStage
from training.stages.gpt import GPTStage
from training.stages.root import RootStage
from training.stages.vqvae import VQVAEStage
from training.trainer import CHECKPOINT_NAME, METRICS_NAME, LoopConfig, load_checkpoint, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA_LOOP = dict(steps=30, log_every=5, checkpoint_every=10, seed=7, device="cuda")


# fp16's skipped first steps made torch warn that the schedule stepped before the optimizer (the trainer
# silences that one warning: the schedule counts training steps)
NO_SCHEDULE_WARNING = pytest.mark.filterwarnings("error:Detected call of `lr_scheduler.step")


@NO_SCHEDULE_WARNING
@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_resume_after_kill_on_cuda_repeats_the_unbroken_run(tmp_path, amp):
    """Dropout on the GPU draws from the GPU's generator: the checkpoint must carry its state, and the
    fp16 gradient scaler's, or the resumed run takes other steps."""
    loop = LoopConfig(**CUDA_LOOP, amp=amp)
    unbroken = train(RegressionStage(), tmp_path / "a", loop, OPTIM, progress=False)
    train(RegressionStage(), tmp_path / "b", loop, OPTIM, progress=False, stop_after=17)
    state = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)  # on the CPU
    assert state["step"] == 10 and state["rng"]["cuda"].device.type == "cpu"
    assert all(t.device.type == "cpu" for t in state["model"].values())
    resumed = train(RegressionStage(), tmp_path / "b", loop, OPTIM, progress=False)
    first = next(unbroken.parameters())
    assert first.device.type == "cuda" and first.dtype == torch.float32  # AMP keeps float32 master weights
    for p, q in zip(unbroken.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    if amp == "fp16":
        assert load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["scaler"]["scale"] > 0


def test_a_cpu_run_resumes_on_cuda(tmp_path):
    """``loop.device`` may change on resume: a run started on a CPU goes on on a GPU (its checkpoint has
    no GPU generator state) and the fit goes on."""
    cpu_loop = LoopConfig(**{**CUDA_LOOP, "device": "cpu"})
    train(RegressionStage(), tmp_path, cpu_loop, OPTIM, progress=False, stop_after=10)
    model = train(RegressionStage(), tmp_path, LoopConfig(**CUDA_LOOP), OPTIM, progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 30
    with open(tmp_path / METRICS_NAME, newline="") as fh:
        mse = {int(float(r["step"])): float(r["mse"]) for r in csv.DictReader(fh)}
    assert sorted(mse) == [5, 10, 15, 20, 25, 30] and mse[30] < mse[10]  # the fit went on on the GPU


@pytest.mark.slow
@NO_SCHEDULE_WARNING
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_every_stage_trains_on_cuda_and_the_model_dances_on_a_cpu(data_dir, short_song, tmp_path, amp):
    work = tmp_path / "runs"
    on_gpu = ("loop.device=cuda", f"loop.amp={amp}")
    for stage, file, steps in ((VQVAEStage, "tiny_vqvae.yaml", 8), (RootStage, "tiny_root.yaml", 4),
                               (DecoderStage, "tiny_decoder.yaml", 4)):
        model = train_stage(stage, tiny_config(file, data_dir, work, f"loop.steps={steps}", *on_gpu), progress=False)
        books = [name for name, _ in model.named_buffers() if name.endswith("bottleneck.level_blocks.0.k")]
        assert books and all(torch.isfinite(b).all() for b in model.buffers())  # EMA codebooks under AMP
    train_stage(GPTStage, tiny_config("tiny_gpt.yaml", data_dir, work, "loop.steps=6", "gpt.n_styles=4", *on_gpu),
                progress=False)
    song = short_song(8.0, name="ac_song", offset=5.0)
    ac = train_stage(ActorCriticStage, tiny_config(
        "tiny_actor_critic.yaml", data_dir, work, "loop.steps=4", "actor_critic.rollout_every=2",
        f"actor_critic.songs=[{song}]", "actor_critic.reward=balanced", *on_gpu), progress=False)
    assert next(ac.parameters()).device.type == "cuda"
    for name in ("vqvae", "root", "decoder", "gpt", "actor_critic"):
        state = load_checkpoint(work / name / CHECKPOINT_NAME)
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point()), name

    model_dir = tmp_path / "model"
    assert training_main(["export", "--run", str(work / "actor_critic"), "--run", str(work / "decoder"),
                          "-o", str(model_dir)]) == 0
    assert json.loads((model_dir / "config.json").read_text())["gpt"]["n_styles"] == 4
    model = load_model(model_dir)  # on the CPU
    assert all(p.device.type == "cpu" for p in model.gpt.parameters())
    dance = Choreographer(model).generate(song, GenerateOptions(sampling=SamplingOptions(seed=0)))
    assert np.isfinite(dance.joints).all() and dance.num_frames > 400
