"""The duet stage: the follower GPT trains on the real couples, with held-out takes kept out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.clock import FRAMES_PER_TOKEN
from engine.relative_position import DEFAULT_GRID
from training.config import config_from_dict
from training.errors import ConfigError
from training.stages.common import train_stage
from training.stages.duet import DuetStage, encode_couple

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(data_dir, tiny_model_dir, tmp_path, **duet):
    return config_from_dict({
        "stage": "duet", "run_dir": str(tmp_path / "run"), "batch_size": 4,
        "init": {"model_dir": str(tiny_model_dir)},
        "follower": {"vocab_size_up": 64, "vocab_size_down": 64, "n_relpos": DEFAULT_GRID.size, "n_embd": 32,
                     "n_head": 2, "n_layer": 2, "lookahead": 4},
        "duet": {"duet_dir": str(data_dir / "cmu_salsa_duet"), "music": False, "rotations_deg": [180.0],
                 **duet},
        "loop": {"steps": 4, "log_every": 2, "checkpoint_every": 2, "device": "cpu"},
    })


def test_the_follower_trains_on_the_couples_and_never_sees_the_held_out_take(data_dir, tiny_model_dir, tmp_path):
    cfg = _config(data_dir, tiny_model_dir, tmp_path)
    stage = DuetStage(cfg, tmp_path / "run")
    assert stage.held_out == ["cmu_salsa_11"]
    assert stage.num_couples == 12 * 2 * 2  # 12 training takes, turned copies, then mirror images
    # every window's follower tokens and conditions stay inside one take
    generator = torch.Generator().manual_seed(0)
    up, down, rel, leader_up, leader_down, music = stage.batch(0, generator, torch.device("cpu"))
    assert up.shape == (4, 30) and rel.shape == (4, 30) and leader_up.shape == (4, 33) and music.shape == (4, 33, 438)
    assert int(rel.max()) < DEFAULT_GRID.size and float(music.abs().max()) == 0.0  # duet.music: false
    model = train_stage(DuetStage, cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "duet_codes.npz").is_file()
    assert sum(p.numel() for p in model.parameters()) > 0
    with np.load(tmp_path / "run" / "duet_codes.npz") as z:
        assert len(z["take_tokens"]) == 48 and int(z["take_tokens"].sum()) == len(z["up"])


def test_a_couples_codes_are_its_dancers_own(data_dir, tiny_model_dir):
    from engine.checkpoint import load_model
    from training.data.duet import load_duet

    duet = load_duet(data_dir / "cmu_salsa_duet" / "60_02.bvh", data_dir / "cmu_salsa_duet" / "61_02.bvh")
    codes = encode_couple(load_model(tiny_model_dir).vqvae, duet)
    n = duet.num_frames // FRAMES_PER_TOKEN
    assert all(len(v) == n for v in codes.values())
    assert not np.array_equal(codes["up"], codes["leader_up"])  # two different dancers
    middle = np.arange(n) * FRAMES_PER_TOKEN + FRAMES_PER_TOKEN // 2
    np.testing.assert_array_equal(codes["rel"], DEFAULT_GRID.encode(duet.leader[middle], duet.follower[middle]))


def test_bad_duet_configs_are_named(data_dir, tiny_model_dir, tmp_path):
    cfg = _config(data_dir, tiny_model_dir, tmp_path)
    cfg.follower.vocab_size_up = 512
    with pytest.raises(ConfigError, match="vocab_size_up"):
        DuetStage(cfg, tmp_path / "run")
    cfg = _config(data_dir, tiny_model_dir, tmp_path)
    cfg.init.model_dir = None
    with pytest.raises(ConfigError, match="init.model_dir"):
        DuetStage(cfg, tmp_path / "run")


def test_the_follower_goes_into_the_model_it_was_trained_on(data_dir, tiny_model_dir, styled_model_dir, tmp_path):
    import shutil

    from engine.checkpoint import load_model
    from training.errors import TrainingError
    from training.follower_export import add_follower

    cfg = _config(data_dir, tiny_model_dir, tmp_path)
    cfg.loop.steps = 2
    trained = train_stage(DuetStage, cfg, tmp_path / "run", progress=False)
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    add_follower(tmp_path / "run", model_dir)
    model = load_model(model_dir)
    assert model.follower is not None and model.config.follower == cfg.follower
    for (name, a), (_, b) in zip(trained.state_dict().items(), model.follower.state_dict().items()):
        assert torch.equal(a.cpu(), b), name
    other = shutil.copytree(styled_model_dir, tmp_path / "other")
    with pytest.raises(TrainingError, match="VQ-VAE"):
        add_follower(tmp_path / "run", other)
    assert load_model(other).follower is None  # refused: nothing written
