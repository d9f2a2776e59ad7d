"""The shared training loop: resume after a kill, divergence guard, logs, two-process DDP on CPU."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from training.errors import TrainingDiverged, TrainingError
from training.trainer import CHECKPOINT_NAME, METRICS_NAME, LoopConfig, OptimConfig, load_checkpoint, train

REPO = Path(__file__).resolve().parents[2]


class RegressionStage:
    """Fit y = A x with a small MLP (dropout so global RNG state matters across a resume)."""

    name = "toy"

    def __init__(self, poison_step: int | None = None, inf_grad_step: int | None = None):
        self.poison_step = poison_step
        self.inf_grad_step = inf_grad_step
        g = torch.Generator().manual_seed(123)
        self.a = torch.randn(4, 3, generator=g)

    def build(self, device):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.1), nn.ReLU(), nn.Linear(16, 3)).to(device)

    def trainable_parameters(self, model):
        return model.parameters()

    def batch(self, step, generator, device):
        x = torch.randn(8, 4, generator=generator)
        return x.to(device), (x @ self.a).to(device)

    def loss(self, model, batch, step):
        x, y = batch
        out = model(x)
        if step == self.inf_grad_step:  # a finite loss whose gradient is infinite
            out.register_hook(lambda grad: grad * float("inf"))
        loss = torch.mean((out - y) ** 2)
        if self.poison_step is not None and step >= self.poison_step:
            loss = loss * float("nan")
        return loss, {"mse": float(loss.detach())}


LOOP = dict(steps=30, log_every=5, checkpoint_every=10, seed=7, device="cpu")
OPTIM = OptimConfig(lr=1e-2, betas=(0.9, 0.999), milestones=[20], gamma=0.5)


def test_resume_after_kill_matches_unbroken_run(tmp_path):
    unbroken = train(RegressionStage(), tmp_path / "a", LoopConfig(**LOOP), OPTIM, progress=False)
    # "Kill" after 17 steps: the last checkpoint is at step 10, steps 11-17 are lost.
    train(RegressionStage(), tmp_path / "b", LoopConfig(**LOOP), OPTIM, progress=False, stop_after=17)
    state = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert state["step"] == 10 and state["optimizer"]["state"]  # Adam moments were saved
    resumed = train(RegressionStage(), tmp_path / "b", LoopConfig(**LOOP), OPTIM, progress=False)
    for p, q in zip(unbroken.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    final = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert final["step"] == 30 and final["scheduler"]["last_epoch"] == 30
    rows = (tmp_path / "b" / METRICS_NAME).read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [f"{s}.0" for s in range(5, 31, 5)]
    assert (tmp_path / "b" / "loss.png").stat().st_size > 1000
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="step 16"):
        train(RegressionStage(poison_step=15), tmp_path, LoopConfig(**LOOP), OPTIM, progress=False)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 10


def test_nan_loss_before_any_checkpoint_says_nothing_is_kept(tmp_path):
    with pytest.raises(TrainingDiverged, match="No checkpoint was saved yet .* so nothing is kept"):
        train(RegressionStage(poison_step=5), tmp_path, LoopConfig(**LOOP), OPTIM, progress=False)
    assert not (tmp_path / CHECKPOINT_NAME).exists()


@pytest.mark.parametrize("inf_step, kept", [(9, None), (19, 10)])
def test_infinite_gradient_with_finite_loss_is_never_saved(tmp_path, inf_step, kept):
    """Step inf_step + 1 is a checkpoint step: its loss is finite but its update made the weights NaN."""
    expected = "nothing is kept" if kept is None else f"step {kept}\\) is kept"
    with pytest.raises(TrainingDiverged, match=f"NaN or infinite by step {inf_step + 1}.*{expected}"):
        train(RegressionStage(inf_grad_step=inf_step), tmp_path, LoopConfig(**LOOP), OPTIM, progress=False)
    if kept is None:
        assert not (tmp_path / CHECKPOINT_NAME).exists()
    else:
        state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
        assert state["step"] == kept
        assert all(torch.isfinite(t).all() for t in state["model"].values())


def _dump(optim: OptimConfig, **extra) -> dict:
    return {"optim": dataclasses.asdict(optim), "loop": dict(LOOP), "batch_size": 8, **extra}


def test_resume_applies_a_changed_learning_rate_and_refuses_other_changes(tmp_path, capsys):
    train(RegressionStage(), tmp_path, LoopConfig(**LOOP), OPTIM, config_dump=_dump(OPTIM), progress=False,
          stop_after=12)
    with pytest.raises(TrainingError, match="batch_size: 8 in the checkpoint, 16 now"):
        train(RegressionStage(), tmp_path, LoopConfig(**LOOP), OPTIM, config_dump=_dump(OPTIM, batch_size=16),
              progress=False)
    slower = dataclasses.replace(OPTIM, lr=1e-3)
    train(RegressionStage(), tmp_path, LoopConfig(**LOOP), slower, config_dump=_dump(slower), progress=False)
    assert "optim.lr: 0.01 -> 0.001" in capsys.readouterr().err
    final = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert final["step"] == 30
    assert final["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.5)  # past the milestone at 20
    assert final["config"]["optim"]["lr"] == 1e-3


def test_a_run_saved_before_a_setting_existed_resumes_where_the_setting_is_at_its_default(tmp_path):
    """The project gains settings (the duet's, a data option) after runs have started; such a run ran
    as the new setting's default, so resuming it at the default is no change, and away from it is."""
    old_run = _dump(OPTIM)  # the settings the run was started with: no "duet" section yet
    defaults = {"duet": {"mirror": True}, "data": {"style_balance": 0.0}}
    for folder in ("same", "changed"):
        train(RegressionStage(), tmp_path / folder, LoopConfig(**LOOP), OPTIM, config_dump=old_run,
              progress=False, stop_after=12)
    now = _dump(OPTIM, duet={"mirror": True}, data={"style_balance": 0.0})
    train(RegressionStage(), tmp_path / "same", LoopConfig(**LOOP), OPTIM, config_dump=now,
          config_defaults=defaults, progress=False)
    assert load_checkpoint(tmp_path / "same" / CHECKPOINT_NAME)["step"] == 30
    saved = load_checkpoint(tmp_path / "changed" / CHECKPOINT_NAME)["step"]
    with pytest.raises(TrainingError, match="duet.mirror: None in the checkpoint, False now"):
        train(RegressionStage(), tmp_path / "changed", LoopConfig(**LOOP), OPTIM,
              config_dump=_dump(OPTIM, duet={"mirror": False}, data={"style_balance": 0.0}),
              config_defaults=defaults, progress=False)
    assert load_checkpoint(tmp_path / "changed" / CHECKPOINT_NAME)["step"] == saved < 30  # left as it was


def test_a_configs_defaults_resolve_paths_as_the_config_does():
    from training.config import load_config

    cfg = load_config(REPO / "training" / "configs" / "default_vqvae.yaml")
    defaults = cfg.defaults_dict()
    assert defaults["duet"]["duet_dir"] == cfg.duet.duet_dir  # the config leaves it at its default
    assert defaults["data"]["style_balance"] == cfg.data.style_balance
    assert defaults["loop"]["steps"] != cfg.loop.steps  # the config's own choice is not a default


DDP_SCRIPT = r"""
import sys, torch
from torch import nn
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
from test_trainer import RegressionStage, OPTIM
from training.trainer import CHECKPOINT_NAME, LoopConfig, load_checkpoint, train
def wrap(model, info):
    return nn.parallel.DistributedDataParallel(model)
model = train(RegressionStage(), {run!r}, LoopConfig(steps=12, log_every=4, checkpoint_every=6, seed=1,
              device="cpu"), OPTIM, wrap_ddp=wrap, progress=False)
# every rank returns from train() only once rank 0 has written the run's files (a next stage reads them)
assert load_checkpoint({run!r} + "/" + CHECKPOINT_NAME)["step"] == 12
import torch.distributed as dist
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
torch.save(flat, {run!r} + f"/params_rank{{dist.get_rank()}}.pt")
dist.barrier()  # a rank that tears the group down while the other still uses it can abort
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_process_ddp_ranks_agree(tmp_path):
    script = tmp_path / "ddp_job.py"
    run = tmp_path / "run"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO), tests=str(Path(__file__).parent), run=str(run)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29531", str(script)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(run / "params_rank0.pt")
    b = torch.load(run / "params_rank1.pt")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert load_checkpoint(run / CHECKPOINT_NAME)["step"] == 12
