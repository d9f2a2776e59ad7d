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


def test_validation_couples_are_scored_and_never_trained_on(data_dir, tiny_model_dir, tmp_path):
    """duet.validation: those takes leave the training couples (with their copies) and every window of
    each is scored at every log step (validation cross-entropy in metrics.csv); a held-out take may not
    be used to validate."""
    import csv

    cfg = _config(data_dir, tiny_model_dir, tmp_path, validation=["cmu_salsa_14"])
    stage = DuetStage(cfg, tmp_path / "run")
    assert stage.num_couples == 11 * 2 * 2 and stage.validation == ["cmu_salsa_14"]
    up, down, rel, leader_up, leader_down, music = stage.val_windows
    assert up.shape[1] == 30 and leader_up.shape[1] == 33 and len(up) > 100  # every window of the take
    model = stage.build(torch.device("cpu")).eval()
    with torch.no_grad():
        scores = stage.validate(model)
    assert set(scores) == {"val_ce_up", "val_ce_down", "val_ce_rel", "val_ce"}
    assert scores["val_ce"] == pytest.approx(scores["val_ce_up"] + scores["val_ce_down"] + scores["val_ce_rel"])
    assert scores["val_ce_rel"] == pytest.approx(np.log(DEFAULT_GRID.size), rel=0.2)  # untrained: near uniform
    train_stage(DuetStage, cfg, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(float(r["val_ce"]) > 0 for r in rows)
    with pytest.raises(ConfigError, match="not training couples"):
        DuetStage(_config(data_dir, tiny_model_dir, tmp_path, validation=["cmu_salsa_11"]), tmp_path / "bad")


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
    # a copy whose pose decoders were fine-tuned since (the decoder stage) gives the same codes: accepted
    from engine.checkpoint import save_model

    refined = load_model(tiny_model_dir)
    with torch.no_grad():
        for p in refined.vqvae.vqvae_up.decoders.parameters():
            p.add_(0.01)
    refined_dir = save_model(refined, tmp_path / "refined")
    add_follower(tmp_path / "run", refined_dir)
    assert load_model(refined_dir).follower is not None
    # a run made before the codes' digest was recorded is checked by the VQ-VAE file, which now differs
    from engine.checkpoint import VQVAE_FILE
    from training.stages.common import file_digest
    from training.trainer import CHECKPOINT_NAME, load_checkpoint

    state = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    effective = state["config"]["effective"]
    del effective["codes_digest"]  # what such a run recorded instead:
    effective["vqvae_digest"] = file_digest(tiny_model_dir / VQVAE_FILE)
    (tmp_path / "old_run").mkdir()
    torch.save(state, tmp_path / "old_run" / CHECKPOINT_NAME)
    # the folder it was trained on, its VQ-VAE file as it was (save_model's bytes may differ from one
    # writing to the next, so a folder the follower was since added to is not that file any more)
    add_follower(tmp_path / "old_run", shutil.copytree(tiny_model_dir, tmp_path / "as_trained"))
    with pytest.raises(TrainingError, match="VQ-VAE"):
        add_follower(tmp_path / "old_run", refined_dir)


# --- the RL phase (training.stages.duet_rl) -------------------------------------------------------------------
def _rl_config(data_dir, tmp_path, **rl):
    return config_from_dict({
        "stage": "duet-rl", "run_dir": str(tmp_path / "rl"), "batch_size": 4,
        "init": {"duet_run": str(tmp_path / "run")},
        "data": {"aistpp_csv_dirs": [str(data_dir / "aistpp_slices")], "bvh_paths": [],
                 "cache_dir": str(tmp_path / "data_cache"), "split_by_style": True},
        "music": {"feature_cache_dir": str(tmp_path / "features"), "accompaniment_dir": str(tmp_path / "acc")},
        "duet_rl": {"episode_tokens": 10, "group": 2, **rl},
        "loop": {"steps": 3, "log_every": 1, "checkpoint_every": 3, "device": "cpu"},
        "optim": {"lr": 1e-3},
    })


def test_credit_and_slide_per_step():
    from training.stages.duet_rl import credit_matrix, slide_per_step

    w = credit_matrix(4, 0.5)
    np.testing.assert_allclose(w[0], [1.0, 0.5, 0.25, 0.125])
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(credit_matrix(3, 0.0), np.eye(3))
    drift = np.zeros((24, 2))
    drift[9:, 0] = 0.03  # one jump of 3 cm between frames 8 and 9: inside step 1
    drift[20:, 1] = 0.04  # and 4 cm between frames 19 and 20: step 2
    np.testing.assert_allclose(slide_per_step(drift, 3), [0.0, 0.03, 0.04])


def test_the_rl_phase_rewards_only_feet_that_agree_with_placement(data_dir, tiny_model_dir, tmp_path):
    """Episodes on solo leaders (held-out takes never among them), each paid minus the slide its own
    placement causes, recomputed here from the episode's codes; a policy step makes the best-paid
    episode more likely and the worst less; the run goes into a model folder and the engine uses it."""
    import shutil

    from engine.checkpoint import load_model
    from engine.duet import decode_follower, placement_drift
    from engine.generate import Choreographer, GenerateOptions
    from training.follower_export import add_follower
    from training.stages.duet_rl import DuetRLStage, credit_matrix, slide_per_step

    duet = _config(data_dir, tiny_model_dir, tmp_path)
    duet.loop.steps = 2
    train_stage(DuetStage, duet, tmp_path / "run", progress=False)
    cfg = _rl_config(data_dir, tmp_path)
    stage = DuetRLStage(cfg, tmp_path / "rl")
    assert "gLH_sBM_cAll_d18_mLH4_ch02" in stage.held_out  # the street take every stage holds out
    assert not any("gLH_sBM_cAll_d18" in str(d["name"]) for d in stage.leaders) and len(stage.leaders) >= 4
    model = stage.build(torch.device("cpu"))
    batch = stage.batch(0, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert batch["up"].shape == (4, 10) and batch["lead_up"].shape == (4, 10 + 4) and batch["reward"].shape == (4, 9)
    # two stretches of leaders, two episodes each: same leader, different dances
    assert torch.equal(batch["episode"][0], batch["episode"][1]) and torch.equal(batch["episode"][2], batch["episode"][3])
    assert not torch.equal(batch["up"][0], batch["up"][1]) or not torch.equal(batch["rel"][0], batch["rel"][1])
    assert (batch["reward"] <= 0).all() and (batch["reward"] < 0).any()
    # the reward of episode 0, recomputed from its codes and its leader (found by its codes)
    up, down, rel = (batch[k][0].numpy() for k in ("up", "down", "rel"))
    take, first = batch["episode"][0].tolist()
    leader = stage.leaders[take]
    np.testing.assert_array_equal(batch["lead_up"][0, :10].numpy(), leader["up"][first : first + 10])
    joints = leader["joints"][8 * first : 8 * (first + 10)]
    drift = placement_drift(decode_follower(stage.vqvae, up, down), rel, joints)
    np.testing.assert_allclose(batch["reward"][0].numpy(), -100 * slide_per_step(drift, 10)[1:], rtol=1e-5, atol=1e-5)

    # one plain gradient step on this batch: within a group, the better-credited episode gains probability
    # against the other
    credit = (batch["reward"].double() @ torch.as_tensor(credit_matrix(9, 0.5))).sum(1)
    best, worst = (0, 1) if credit[0] > credit[1] else (1, 0)

    def log_p() -> torch.Tensor:
        with torch.no_grad():
            logits = model(batch["up"][:, :-1], batch["down"][:, :-1], batch["rel"][:, :-1], batch["lead_up"][:, 1:],
                           batch["lead_down"][:, 1:], batch["music"][:, 1:])
        actions = (batch["up"][:, 1:], batch["down"][:, 1:], batch["rel"][:, 1:])
        return sum(torch.gather(torch.log_softmax(lg, -1), -1, a[..., None])[..., 0].sum(1)
                   for lg, a in zip(logits, actions))

    before = log_p()
    loss, logs = stage.loss(model, batch, 0)
    assert logs["kl"] == pytest.approx(0.0, abs=1e-6) and logs["slide_cm"] > 0  # the policy is still the anchor
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
    after = log_p()
    assert after[best] - before[best] > after[worst] - before[worst]

    # the whole phase: trained weights differ, and they go into the model folder the duet run came from
    trained = train_stage(DuetRLStage, cfg, tmp_path / "rl", progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), stage.follower_weights.values()))
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    add_follower(tmp_path / "rl", model_dir)
    follower = load_model(model_dir).follower
    assert follower is not None
    for (name, a), (_, b) in zip(trained.state_dict().items(), follower.state_dict().items()):
        assert torch.equal(a.cpu(), b), name
    from training.data.duet import load_duet

    couple = load_duet(data_dir / "cmu_salsa_duet" / "60_02.bvh", data_dir / "cmu_salsa_duet" / "61_02.bvh")
    dance = Choreographer(model_dir).accompany(couple.leader[:240], options=GenerateOptions(rotations=False))
    assert dance.joints.shape == (240, 24, 3) and np.isfinite(dance.joints).all()


def test_bad_rl_configs_are_named(data_dir, tmp_path):
    from training.stages.duet_rl import DuetRLStage

    cfg = _rl_config(data_dir, tmp_path)
    cfg.init.duet_run = None
    with pytest.raises(ConfigError, match="init.duet_run"):
        DuetRLStage(cfg, tmp_path / "rl")
    with pytest.raises(ConfigError, match="episode_tokens"):
        config_from_dict({"stage": "duet-rl", "run_dir": str(tmp_path), "duet_rl": {"episode_tokens": 1}})
    with pytest.raises(ConfigError, match="divide batch_size"):
        config_from_dict({"stage": "duet-rl", "run_dir": str(tmp_path), "batch_size": 6, "duet_rl": {"group": 4}})
