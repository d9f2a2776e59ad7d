"""The training loop every stage shares: seeds, resumable atomic checkpoints, CSV + PNG logs, AMP, DDP.

A stage (VQ-VAE, root, GPT, actor-critic) supplies the model, the batches and the loss; this module
does the rest the same way for all of them:

- **Resume**: ``<run>/checkpoint.pt`` holds model, optimizer, scheduler, scaler, step and RNG
  states. It is written atomically (temp file + rename), so a run killed at any moment restarts from
  its last checkpoint with the same step counter and optimizer state. Batches are drawn from a
  generator seeded by (seed, step, rank), so a resumed run sees the same batches as an unbroken one.
- **Safety**: checkpoints contain only tensors and plain Python values and are read back with
  ``torch.load(weights_only=True)``: loading never executes code.
- **Divergence**: a non-finite loss stops the run with a clear message; the last good checkpoint
  stays as it was. Weights and optimizer state are checked finite before every save (an infinite
  gradient on a step with a finite loss would otherwise save NaN weights as "good").
- **Changed settings on resume**: ``optim.*`` and the loop's length, logging and device are applied
  to the resumed run (and said); any other change (model sizes, data, batch size, seed) is refused,
  since the saved state cannot follow it.
- **Logs**: ``metrics.csv`` (one row per logged step) and ``loss.png`` a person can read.
- **Several GPUs**: under ``torchrun`` (RANK/WORLD_SIZE/LOCAL_RANK set) the model is wrapped in
  DistributedDataParallel (gloo on CPU, nccl on GPU); rank 0 alone writes files.
- **AMP** on CUDA (bf16 autocast, or fp16 with a gradient scaler).
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import random
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from engine.checkpoint import first_non_finite
from engine.files import atomic_file
from training.errors import TrainingDiverged, TrainingError

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"






@dataclass
class OptimConfig:
    """Adam with a step schedule (the official stages all use Adam + MultiStepLR)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=list)  # in steps
    gamma: float = 0.1
    grad_clip: float | None = None


@dataclass
class LoopConfig:
    steps: int = 1000
    log_every: int = 10
    checkpoint_every: int = 200
    seed: int = 0
    amp: str = "bf16"  # "bf16", "fp16" or "off"; only used on CUDA
    device: str = "auto"  # "auto", "cpu", "cuda"


class Stage(Protocol):
    """What a training stage supplies to the loop."""

    name: str

    def build(self, device: torch.device) -> nn.Module: ...

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]: ...

    def batch(self, step: int, generator: torch.Generator, device: torch.device) -> Any: ...

    def loss(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Figures on data the stage does not train on, logged with each metrics row ({} for none). Called
        on the main process, in eval mode, without gradients; must not use collective operations."""
        ...


# --- distributed helpers ------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group when started by torchrun; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (identity without DDP). Used for EMA codebook statistics."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


# --- checkpoints --------------------------------------------------------------------------------------
def _rng_state(device: torch.device) -> dict[str, Any]:
    """Global RNG states as tensors and plain values (so weights_only loading accepts them). On a GPU its
    generator too: dropout there draws from it, not from the CPU's."""
    py_version, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": [py_version, list(py_state), py_gauss],
             "numpy": [np_keys.astype(np.int64).tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore ``_rng_state``'s states; a run saved on the CPU and resumed on a GPU (``loop.device`` may
    change) keeps the GPU's generator as seeded."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


# Settings a resumed run may change: they act from the next step on. ``optim.*`` is applied to the
# loaded optimizer and schedule (``_apply_optim``); every other setting must equal the checkpoint's.
RESUMABLE_SETTINGS = ("optim.", "loop.steps", "loop.log_every", "loop.checkpoint_every", "loop.device",
                      "loop.amp", "epochs", "milestone_epochs", "run_dir", "effective")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def changed_settings(saved: dict[str, Any], now: dict[str, Any],
                     defaults: dict[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (saved value, value now)} for every setting that differs. A setting the saved dump
    lacks (the project gained it after the run started) ran at its default: with ``defaults`` (a dump of
    every setting's default) it is a change only where its value now is not that default."""
    a, b = _flatten(saved), _flatten(now)
    old = _flatten(defaults or {})
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not (k not in a and k in old and b.get(k) == old[k])}


def _check_resume_settings(ckpt_path: Path, saved: dict[str, Any], now: dict[str, Any] | None,
                           defaults: dict[str, Any] | None = None) -> list[str]:
    """The changed settings a resume applies (as "key: old -> new"); raises ``TrainingError`` naming the
    ones it cannot."""
    if not saved or now is None:
        return []
    changes = changed_settings(saved, now, defaults)
    fixed = {k: v for k, v in changes.items() if not k.startswith(RESUMABLE_SETTINGS)}
    if fixed:
        listed = "; ".join(f"{k}: {old!r} in the checkpoint, {new!r} now" for k, (old, new) in fixed.items())
        raise TrainingError(f"cannot resume {ckpt_path} with changed settings ({listed}): the saved model and "
                            "batches follow the old ones. Start a new run folder (--run) or drop the change.")
    return [f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items() if k != "effective" and
            not k.startswith("effective.")]


def _apply_optim(optimizer: torch.optim.Optimizer, scheduler: Any, optim: OptimConfig, step: int) -> None:
    """Make a loaded optimizer and schedule follow ``optim`` from ``step`` on (the saved state keeps its
    own learning rate, betas and milestones otherwise)."""
    decays = sum(1 for m in optim.milestones if m <= step)
    for group in optimizer.param_groups:
        group["initial_lr"] = optim.lr
        group["lr"] = optim.lr * optim.gamma ** decays
        group["betas"] = tuple(optim.betas)
        group["weight_decay"] = optim.weight_decay
    scheduler.base_lrs = [optim.lr for _ in optimizer.param_groups]
    scheduler.milestones = Counter(optim.milestones)
    scheduler.gamma = optim.gamma
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def non_finite_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """The name of the first parameter, buffer or optimizer state tensor holding a NaN or an infinity,
    or None when all are finite."""
    optimizer_tensors = ((f"optimizer state {key} of parameter {index}", tensor)
                         for index, state in optimizer.state.items() for key, tensor in state.items())
    bad = first_non_finite(itertools.chain(model.state_dict().items(), optimizer_tensors))
    return None if bad is None else bad[0]


def save_checkpoint_atomic(path: Path, payload: dict[str, Any]) -> None:
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, ...
        raise TrainingError(f"cannot read training checkpoint {path}: {exc}") from exc


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# --- logging ------------------------------------------------------------------------------------------
class MetricsLog:
    """Append-only CSV; on resume rows past the checkpoint's step are dropped (they were never saved)."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.rows: list[dict[str, float]] = []
        if path.exists():
            with open(path, newline="") as fh:
                self.rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]
            self.rows = [r for r in self.rows if r.get("step", 0) <= resume_step]
            self._rewrite()

    def _rewrite(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        with atomic_file(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self._rewrite()

    def plot(self, out: Path, title: str) -> None:
        if not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in self.rows[-1] if k not in ("step", "lr", "time_s")]
        fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.2 * len(keys)), squeeze=False, sharex=True)
        steps = [r["step"] for r in self.rows]
        for ax, key in zip(axes[:, 0], keys):
            ax.plot(steps, [r.get(key, math.nan) for r in self.rows], lw=1)
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("step")
        fig.suptitle(title)
        fig.tight_layout()
        with atomic_file(out) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)


# --- the loop -----------------------------------------------------------------------------------------
def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step * 9_176 + rank * 7_919) % (2**63 - 1))
    return g


def train(
    stage: Stage,
    run_dir: str | Path,
    loop: LoopConfig,
    optim: OptimConfig,
    config_dump: dict[str, Any] | None = None,
    wrap_ddp: Callable[[nn.Module, DistInfo], nn.Module] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    config_defaults: dict[str, Any] | None = None,
) -> nn.Module:
    """Run (or resume) a stage until ``loop.steps``; returns the trained (unwrapped) model.

    ``stop_after`` ends the process-local loop early after that many steps (used by tests to
    simulate a kill between checkpoints). ``config_defaults``: every setting's default, for resuming a
    run saved before some setting existed (see ``changed_settings``).
    """
    run_dir = Path(run_dir)
    device_kind = "cuda" if (loop.device == "cuda" or (loop.device == "auto" and torch.cuda.is_available())) else "cpu"
    info = init_distributed(device_kind)
    device = resolve_device(loop.device, info)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(loop.seed + info.rank)
    random.seed(loop.seed + info.rank)
    np.random.seed((loop.seed + info.rank) % 2**32)

    model = stage.build(device)
    params = [p for p in stage.trainable_parameters(model) if p.requires_grad]
    if not params:
        raise TrainingError(f"stage {stage.name} has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(optim.milestones), gamma=optim.gamma)
    use_amp = device.type == "cuda" and loop.amp in ("bf16", "fp16")
    amp_dtype = torch.bfloat16 if loop.amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and loop.amp == "fp16")

    step = 0
    ckpt_path = run_dir / CHECKPOINT_NAME
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        if state.get("stage") != stage.name:
            raise TrainingError(f"{ckpt_path} belongs to stage {state.get('stage')!r}, not {stage.name!r}; "
                                "use another run folder")
        applied = _check_resume_settings(ckpt_path, state.get("config") or {}, config_dump, config_defaults)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        if any(change.startswith(("optim.", "epochs", "milestone_epochs")) for change in applied):
            _apply_optim(optimizer, scheduler, optim, step)
        _set_rng_state(state["rng"], device)
        if applied and info.is_main:
            print(f"{stage.name}: resuming at step {step} with changed settings: " + "; ".join(applied),
                  file=sys.stderr)
    if info.enabled and wrap_ddp is not None:
        model = wrap_ddp(model, info)

    log = MetricsLog(run_dir / METRICS_NAME, step) if info.is_main else None

    saved_step = step if ckpt_path.exists() else None

    def kept() -> str:
        if saved_step is None:
            return (f"No checkpoint was saved yet (the first comes at step {loop.checkpoint_every}), so "
                    "nothing is kept")
        return f"The last good checkpoint ({ckpt_path}, step {saved_step}) is kept"

    def save() -> None:
        nonlocal saved_step
        if not info.is_main:
            return
        bad = non_finite_state(unwrap(model), optimizer)
        if bad is not None:
            raise TrainingDiverged(
                f"{stage.name}: {bad} became NaN or infinite by step {step} (an infinite gradient?); stopped "
                f"without saving. {kept()}; lower the learning rate, set optim.grad_clip or check the data.")
        saved_step = step
        save_checkpoint_atomic(ckpt_path, {
            "stage": stage.name, "step": step, "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": _rng_state(device), "config": config_dump or {},
        })

    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=loop.steps, initial=step, desc=stage.name, unit="it", dynamic_ncols=True)
    t_start = time.perf_counter()
    done_here = 0
    try:
        while step < loop.steps:
            model.train()
            batch = stage.batch(step, _step_generator(loop.seed, step, info.rank), device)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                loss, metrics = stage.loss(model, batch, step)
            if not torch.isfinite(loss.detach()).all():
                raise TrainingDiverged(
                    f"{stage.name}: loss became {loss.item()} at step {step + 1}; stopped. {kept()}; lower the "
                    "learning rate or check the data.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if optim.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            with warnings.catch_warnings():
                # fp16: the scaler skips the steps whose gradients overflowed (the first few, while it
                # finds its scale), and torch then warns that the schedule stepped without the optimizer;
                # the schedule counts training steps, so that is as intended
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                scheduler.step()
            step += 1
            done_here += 1
            if log is not None and (step % loop.log_every == 0 or step == loop.steps):
                row = {"step": float(step), "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0],
                       "time_s": time.perf_counter() - t_start}
                row.update({k: float(v) for k, v in metrics.items()})
                validate = getattr(stage, "validate", None)
                if validate is not None:
                    bare = unwrap(model)
                    bare.eval()
                    with torch.no_grad():
                        row.update({k: float(v) for k, v in validate(bare).items()})
                log.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if step % loop.checkpoint_every == 0 or step == loop.steps:
                save()
            if stop_after is not None and done_here >= stop_after:
                break
    finally:
        if bar is not None:
            bar.close()
    if log is not None:
        log.plot(run_dir / "loss.png", f"{stage.name} ({run_dir.name})")
    if info.enabled:  # no rank goes on (to a stage that reads the checkpoint, or to exit) before rank 0's files are written
        dist.barrier()
    return unwrap(model)
