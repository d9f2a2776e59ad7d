"""Training stages: configs, resume at the stage level, what each stage trains, two-process DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import REPO_ROOT, TrainConfig, config_from_dict, load_config
from training.errors import ConfigError
from training.stages.common import poses_and_root_velocity, train_stage, vqvae_from_run
from training.stages.decoder import DecoderStage
from training.stages.gpt import window_music_rows
from training.stages.root import RootStage
from training.stages.vqvae import VQVAEStage
from training.trainer import CHECKPOINT_NAME, load_checkpoint

CONFIGS = REPO_ROOT / "training" / "configs"


# --- helpers (also used by test_end_to_end) ----------------------------------------------------------
def tiny_config(stage_file: str, data_dir: Path, work: Path, *extra: str) -> TrainConfig:
    """A tiny_*.yaml config with data, caches and runs redirected under ``work``."""
    name = stage_file.removeprefix("tiny_").removesuffix(".yaml")
    overrides = [
        f"run_dir={work / name}",
        f"data.aistpp_csv_dirs=[{data_dir / 'aistpp_slices'}]",
        f"data.bvh_paths=[{data_dir / 'cmu_131'}]",
        f"data.cache_dir={work / 'data_cache'}",
        f"music.feature_cache_dir={work / 'feature_cache'}",
        f"music.accompaniment_dir={work / 'accompaniment'}",
        "loop.device=cpu",
    ]
    if name == "root":
        overrides.append(f"init.vqvae_run={work / 'vqvae'}")
    if name == "decoder":
        overrides.append(f"init.vqvae_run={work / 'root'}")
    if name == "gpt":
        overrides.append(f"init.vqvae_run={work / 'root'}")
    if name == "actor_critic":
        overrides.append(f"init.gpt_run={work / 'gpt'}")
    return load_config(CONFIGS / stage_file, [*overrides, *extra])


# --- configs -------------------------------------------------------------------------------------------
def test_paper_configs_load_with_the_papers_hyper_parameters():
    vq = load_config(CONFIGS / "paper_vqvae.yaml")
    assert (vq.vqvae.l_bins, vq.vqvae.emb_width, vq.vqvae.width, vq.vqvae.commit) == (512, 512, 512, 0.02)
    assert (vq.optim.lr, tuple(vq.optim.betas), vq.batch_size, vq.data.stride) == (3e-5, (0.5, 0.999), 32, 40)
    root = load_config(CONFIGS / "paper_root.yaml")
    assert (root.optim.lr, root.batch_size, root.data.stride) == (5e-5, 8, 8)
    gpt = load_config(CONFIGS / "paper_gpt.yaml")
    assert (gpt.gpt.n_embd, gpt.gpt.n_head, gpt.gpt.n_layer_base, gpt.gpt.n_layer_head) == (768, 12, 6, 6)
    assert (gpt.optim.lr, tuple(gpt.optim.betas), gpt.milestone_epochs) == (3e-4, (0.5, 0.999), [250, 400])
    assert gpt.music.normalise is False  # the official GPT reads the raw features
    ac = load_config(CONFIGS / "paper_actor_critic.yaml")
    assert (ac.optim.lr, ac.batch_size, ac.actor_critic.gamma, ac.gpt.n_layer_critic) == (1e-5, 128, 1.0, 3)
    assert ac.actor_critic.start_codes == (423, 12) and ac.actor_critic.reward == "released"
    # epochs -> steps from the number of windows (ceil(windows / batch) per epoch)
    vq.apply_epochs(num_windows=100)
    assert vq.loop.steps == 500 * 4 and vq.optim.milestones == [400, 800]


def test_config_errors_name_the_bad_key(tmp_path):
    base = {"stage": "vqvae", "run_dir": "runs/x"}
    with pytest.raises(ConfigError, match=r"config\.loop: unknown key\(s\) \['stepz'\]"):
        config_from_dict({**base, "loop": {"stepz": 3}})
    with pytest.raises(ConfigError, match=r"config\.optim\.lr: expected a number"):
        config_from_dict({**base, "optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="stage must be one of"):
        config_from_dict({**base, "stage": "dance"})
    with pytest.raises(ConfigError, match="reward must be one of"):
        config_from_dict({**base, "actor_critic": {"reward": "both"}})
    with pytest.raises(ConfigError, match="rollouts_per_song must be at least 1"):
        config_from_dict({**base, "actor_critic": {"rollouts_per_song": 0}})
    with pytest.raises(ConfigError, match="rollout_temperature positive"):
        config_from_dict({**base, "actor_critic": {"rollout_temperature": 0.0}})
    with pytest.raises(ConfigError, match="rollout_max_repeat must be at least 1"):
        config_from_dict({**base, "actor_critic": {"rollout_max_repeat": 0}})
    with pytest.raises(ConfigError, match="kl_weight and speed_reward must not be negative"):
        config_from_dict({**base, "actor_critic": {"kl_weight": -0.1}})
    with pytest.raises(ConfigError, match="kl_weight and speed_reward must not be negative"):
        config_from_dict({**base, "actor_critic": {"speed_reward": -1.0}})
    with pytest.raises(ConfigError, match="rollout_styles must name at least one style"):
        config_from_dict({**base, "actor_critic": {"rollout_styles": []}})
    with pytest.raises(ConfigError, match="rollout_style_guidance must be positive"):
        config_from_dict({**base, "actor_critic": {"rollout_style_guidance": 0.0}})
    with pytest.raises(ConfigError, match="tune must be 'head' or 'styles'"):
        config_from_dict({**base, "actor_critic": {"tune": "all"}})
    with pytest.raises(ConfigError, match=r"speed_band must be \[low, high\]"):
        config_from_dict({**base, "actor_critic": {"speed_band": [1.2, 0.9]}})
    with pytest.raises(ConfigError, match="key=value"):
        config_from_dict(base, ["loop.steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: vqvae\nrun_dir: x\ngpt: {n_embd: 30, n_head: 4}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*n_embd"):
        load_config(bad)


def test_rollouts_decode_with_the_configured_repeat_limit():
    from types import SimpleNamespace

    from training.stages.actor_critic import ActorCriticStage

    base = {"stage": "actor-critic", "run_dir": "runs/x"}
    official = config_from_dict(base)
    assert ActorCriticStage._rollout_options(SimpleNamespace(cfg=official), 0, 0).max_repeat is None
    limited = config_from_dict({**base, "actor_critic": {"rollout_max_repeat": 15, "rollout_temperature": 1.0}})
    options = ActorCriticStage._rollout_options(SimpleNamespace(cfg=limited), 2, 1)
    assert options.max_repeat == 15 and not options.greedy and options.seed == 2001
    assert options.style == 0 and options.style_guidance == 1.0
    styled = config_from_dict({**base, "actor_critic": {"rollout_style_guidance": 2.5, "rollout_temperature": 1.0}})
    options = ActorCriticStage._rollout_options(SimpleNamespace(cfg=styled), 0, 3, style=2)
    assert (options.style, options.style_guidance) == (2, 2.5)


def test_actor_probabilities_are_the_guided_ones_the_rollouts_sample_from():
    """Rows with a style: any + g (style - any), as the engine's sampler mixes them; "any" rows: the
    model's own logits (one pass when no row has a style or g is 1)."""
    from training.stages.actor_critic import guided_logits

    calls = []

    def policy(up, down, music, style):  # logits that depend on the style: (B, t, V)
        calls.append(style.clone())
        base = up[..., None].float() + torch.arange(5.0)
        return base + 3.0 * style[:, None, None], -base + style[:, None, None]

    up = down = torch.tensor([[1, 2], [3, 4], [0, 1]])
    music = torch.zeros(3, 2, 4)
    style = torch.tensor([0, 2, 1])
    lu, ld = guided_logits(policy, up, down, music, style, 2.5)
    base = up[..., None].float() + torch.arange(5.0)
    w = torch.tensor([0.0, 2.5 * 2, 2.5 * 1])[:, None, None]  # any + 2.5 (style - any), style - any = style x 3
    torch.testing.assert_close(lu, base + 3.0 * w)
    torch.testing.assert_close(ld, -base + w)
    assert len(calls) == 2 and calls[1].eq(0).all()
    calls.clear()
    guided_logits(policy, up, down, music, torch.zeros(3, dtype=torch.long), 2.5)
    guided_logits(policy, up, down, music, style, 1.0)
    assert len(calls) == 2  # one pass each


def test_overrides_and_paths_resolve_against_the_repository(tmp_path):
    cfg = load_config(CONFIGS / "tiny_vqvae.yaml", ["loop.steps=7", f"data.bvh_paths=[{tmp_path}]",
                                                    "vqvae.width=16"])
    assert load_config(CONFIGS / "tiny_vqvae.yaml", ["optim.lr=1e-5"]).optim.lr == 1e-5  # YAML reads "1e-5" as text
    assert cfg.loop.steps == 7 and cfg.vqvae.width == 16 and cfg.data.bvh_paths == [str(tmp_path)]
    assert cfg.data.aistpp_csv_dirs == [str((REPO_ROOT / "../shared/data/aistpp_slices").resolve())]
    assert Path(cfg.run_dir) == REPO_ROOT / "runs" / "tiny_vqvae"


def test_cli_refuses_a_config_of_another_stage(capsys):
    from training.cli import main

    assert main(["root", "--config", str(CONFIGS / "tiny_vqvae.yaml")]) == 2
    assert "use 'python -m training vqvae'" in capsys.readouterr().err


# --- data alignment --------------------------------------------------------------------------------------
def test_root_velocity_and_gpt_music_alignment():
    joints = np.cumsum(np.random.default_rng(0).normal(size=(2, 16, 24, 3)), axis=1).astype(np.float32)
    pose, velocity = poses_and_root_velocity(joints)
    np.testing.assert_allclose(velocity[:, :-1], joints[:, 1:, 0] - joints[:, :-1, 0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(velocity[:, -1], velocity[:, -2])
    assert np.all(pose.reshape(2, 16, 24, 3)[:, :, 0] == 0)

    class Windows:  # two windows of clip 0 starting at frames 0 and 16, one of clip 1 at 8
        index = np.array([[0, 0], [0, 16], [1, 8]])

        def __len__(self):
            return 3

    # clip 0 has 6 tokens (music rows 0..5), clip 1 has 5 (rows 6..10); a window reads 4 rows from its first
    rows = window_music_rows(Windows(), [6, 5])
    np.testing.assert_array_equal(rows[:, None] + np.arange(4), [[0, 1, 2, 3], [2, 3, 4, 5], [7, 8, 9, 10]])


# --- stage behaviour on the real data ------------------------------------------------------------------------
def test_vqvae_stage_resumes_after_a_kill_exactly(data_dir, tmp_path, one_thread):
    loop = ["loop.steps=6", "loop.checkpoint_every=3", "loop.log_every=1"]
    cfg = tiny_config("tiny_vqvae.yaml", data_dir, tmp_path, *loop)
    unbroken = train_stage(VQVAEStage, cfg, tmp_path / "a", progress=False)
    train_stage(VQVAEStage, cfg, tmp_path / "b", progress=False, stop_after=4)  # killed at step 4
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["step"] == 3
    resumed = train_stage(VQVAEStage, cfg, tmp_path / "b", progress=False)
    a, b = unbroken.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:  # weights and the codebooks' EMA statistics
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    sa = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    sb = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert sa["step"] == sb["step"] == 6
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        torch.testing.assert_close(pa["exp_avg_sq"], pb["exp_avg_sq"], rtol=0, atol=0)
    assert bool(resumed.vqvae_up.bottleneck.codebook.initialised)
    assert sb["config"]["effective"]["vqvae"]["with_root_decoder"] is False


def test_root_stage_trains_only_the_root_decoder(data_dir, tmp_path, one_thread):
    train_stage(VQVAEStage, tiny_config("tiny_vqvae.yaml", data_dir, tmp_path, "loop.steps=3"), progress=False)
    step1 = vqvae_from_run(tmp_path / "vqvae").state_dict()
    cfg = tiny_config("tiny_root.yaml", data_dir, tmp_path, "loop.steps=4", "optim.lr=0.01")
    stage = RootStage(cfg, Path(cfg.run_dir))
    torch.manual_seed(cfg.loop.seed)  # as the trainer seeds before build: the same initial root decoder
    before = stage.build(torch.device("cpu")).vqvae.state_dict()
    trained = train_stage(RootStage, cfg, progress=False).vqvae.state_dict()
    for key, value in step1.items():  # everything of step 1, codebooks included, is untouched
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0, msg=key)
    root_keys = [k for k in trained if k.startswith("vqvae_down.decoders_root.")]
    assert root_keys and all(not torch.equal(trained[k], before[k]) for k in root_keys if k.endswith("weight"))
    # control: with a learning rate of zero the root decoder stays exactly at that initial state
    still = train_stage(RootStage, tiny_config("tiny_root.yaml", data_dir, tmp_path, "loop.steps=2", "optim.lr=1e-30"),
                        tmp_path / "still", progress=False).vqvae.state_dict()
    for key in root_keys:
        torch.testing.assert_close(still[key], before[key], rtol=0, atol=1e-20, msg=key)
    model = vqvae_from_run(tmp_path / "root")
    assert model.config.with_root_decoder


def test_decoder_stage_trains_only_the_pose_decoders_and_keeps_the_codes(data_dir, tmp_path, one_thread):
    train_stage(VQVAEStage, tiny_config("tiny_vqvae.yaml", data_dir, tmp_path, "loop.steps=3"), progress=False)
    train_stage(RootStage, tiny_config("tiny_root.yaml", data_dir, tmp_path, "loop.steps=2"), progress=False)
    base = vqvae_from_run(tmp_path / "root")
    cfg = tiny_config("tiny_decoder.yaml", data_dir, tmp_path, "loop.steps=4", "optim.lr=0.01")
    trained = train_stage(DecoderStage, cfg, progress=False).vqvae
    before, after = base.state_dict(), trained.state_dict()
    decoder_keys = [k for k in after if k.startswith(("vqvae_up.decoders.", "vqvae_down.decoders."))]
    assert decoder_keys
    for key, value in before.items():  # encoders, codebooks (EMA statistics too), root decoder: untouched
        if key not in decoder_keys:
            torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)
    assert all(not torch.equal(after[k], before[k]) for k in decoder_keys if k.endswith("weight"))
    exported = vqvae_from_run(tmp_path / "decoder")  # read back as any VQ-VAE run; the speed weight recorded
    assert exported.config.speed == 16.0 and exported.config.with_root_decoder
    assert exported.codes_digest() == base.codes_digest()
    assert load_checkpoint(tmp_path / "decoder" / CHECKPOINT_NAME)["config"]["effective"]["vqvae_run"] == str(
        tmp_path / "root")
    # the same poses give the same codes and decode to something else
    from training.data.sources import load_windows

    windows, _, _ = load_windows(cfg.data)
    pose, _ = poses_and_root_velocity(windows[0]["joints"][None])
    pose_t = torch.from_numpy(pose)
    codes = base.encode(pose_t)
    assert all(torch.equal(a, b) for a, b in zip(codes, exported.encode(pose_t)))
    assert not torch.allclose(base.decode(*codes), exported.decode(*codes))
    # control: a different encoder changes the digest
    moved = vqvae_from_run(tmp_path / "root")
    with torch.no_grad():
        next(moved.vqvae_up.encoders.parameters()).add_(1e-3)
    assert moved.codes_digest() != base.codes_digest()


def test_decoder_stage_needs_a_vqvae_run(tmp_path):
    from training.stages.decoder import DecoderStage as Stage

    cfg = load_config(CONFIGS / "tiny_decoder.yaml", ["init.vqvae_run=null"])
    with pytest.raises(ConfigError, match="init.vqvae_run"):
        Stage(cfg, tmp_path)


DDP_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {repo!r})
import torch.distributed as dist
from training.config import load_config
from training.stages.common import train_stage
from training.stages.vqvae import VQVAEStage
cfg = load_config({config!r}, {overrides!r})
model = train_stage(VQVAEStage, cfg, {run!r}, progress=False)
state = {{k: v.clone() for k, v in model.state_dict().items()}}
torch.save(state, {run!r} + f"/state_rank{{dist.get_rank()}}.pt")
dist.destroy_process_group()
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_vqvae_stage_two_process_ddp_keeps_codebooks_identical(data_dir, tmp_path):
    # prepare the data cache once so both ranks only read it
    overrides = [f"data.aistpp_csv_dirs=[{data_dir / 'aistpp_slices'}]", "data.bvh_paths=[]",
                 f"data.cache_dir={tmp_path / 'cache'}", "loop.steps=4", "loop.checkpoint_every=2",
                 "loop.device=cpu", "batch_size=2"]
    run = tmp_path / "run"
    script = tmp_path / "ddp_vqvae.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO_ROOT), config=str(CONFIGS / "tiny_vqvae.yaml"),
                                        overrides=overrides, run=str(run)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={_free_port()}", str(script)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[:3000] + "\n...\n" + proc.stderr[-2000:]
    a = torch.load(run / "state_rank0.pt")
    b = torch.load(run / "state_rank1.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    book = a["vqvae_up.bottleneck.level_blocks.0.k"]
    assert bool(a["vqvae_up.bottleneck.level_blocks.0.initialised"]) and book.abs().sum() > 0
    assert load_checkpoint(run / CHECKPOINT_NAME)["step"] == 4


# --- standardised music -----------------------------------------------------------------------------------
def test_music_statistics_floor_constant_columns():
    from training.stages.gpt import MUSIC_STD_FLOOR, music_statistics

    rng = np.random.default_rng(0)
    music = np.concatenate([rng.normal(5.0, 120.0, (40, 30, 2)), np.full((40, 30, 1), 0.25)], axis=-1)
    mean, std = music_statistics(music)
    np.testing.assert_allclose(mean, music.reshape(-1, 3).mean(0), rtol=1e-9)
    np.testing.assert_allclose(std[:2], music.reshape(-1, 3).std(0)[:2], rtol=1e-9)
    assert std[2] == MUSIC_STD_FLOOR  # a constant column is shifted to 0, not divided by 0


@pytest.mark.slow
def test_gpt_stage_standardises_music_and_export_writes_the_statistics(data_dir, short_song, tmp_path, one_thread):
    """The GPT trains on standardised music, records the statistics in its run, the actor-critic stage
    inherits and applies them, and the exported model's config carries them."""
    import json

    from engine.audio import extract_features
    from engine.checkpoint import load_model
    from training.model_export import export_model
    from training.stages.actor_critic import ActorCriticStage
    from training.stages.common import read_run
    from training.stages.gpt import CODES_FILE, GPTStage

    work = tmp_path / "runs"
    train_stage(VQVAEStage, tiny_config("tiny_vqvae.yaml", data_dir, work, "loop.steps=2"), progress=False)
    train_stage(RootStage, tiny_config("tiny_root.yaml", data_dir, work, "loop.steps=2"), progress=False)
    gpt_cfg = tiny_config("tiny_gpt.yaml", data_dir, work, "loop.steps=2")
    train_stage(GPTStage, gpt_cfg, progress=False)

    effective = read_run(work / "gpt", ("gpt",))["config"]["effective"]
    mean, std = np.asarray(effective["music_mean"]), np.asarray(effective["music_std"])
    assert mean.shape == std.shape == (438,) and std.min() >= 1e-3
    stage = GPTStage(gpt_cfg, work / "gpt")
    with np.load(work / "gpt" / CODES_FILE) as cached:  # the cache keeps the raw features, per clip token
        rows = stage.music_rows[:, None].numpy() + np.arange(stage.n_tokens)  # (N, 30) rows a window reads
        raw = cached["music"][rows].reshape(-1, 438)  # what the training windows read, raw
    np.testing.assert_allclose(mean, raw.mean(0), rtol=1e-4, atol=1e-4)
    assert raw.std(0).max() > 10  # raw MFCCs are large: standardising them matters
    fed = stage.music[torch.from_numpy(rows)].reshape(-1, 438).numpy()  # what the GPT is fed: standardised
    live = raw.std(0) > 1e-3
    np.testing.assert_allclose(fed.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(fed.std(0)[live], 1.0, rtol=1e-3)

    song = short_song(6.0, name="ac_song", offset=5.0)
    ac_cfg = tiny_config("tiny_actor_critic.yaml", data_dir, work, f"actor_critic.songs=[{song}]")
    ac = ActorCriticStage(ac_cfg, work / "actor_critic")
    assert ac.effective()["music_mean"] == effective["music_mean"]
    features = extract_features(song, ac.feature_mode, with_beats=True,
                                cache_dir=ac_cfg.music.feature_cache_dir).features
    np.testing.assert_allclose(ac.songs[0]["music"], (features[: ac.songs[0]["music"].shape[0]] - mean) / std,
                               rtol=1e-4, atol=1e-4)

    model_dir = export_model([work / "gpt", work / "root"], tmp_path / "model")
    config = json.loads((model_dir / "config.json").read_text())
    assert config["music_mean"] == effective["music_mean"] and config["music_std"] == effective["music_std"]
    assert load_model(model_dir).config.music_std == effective["music_std"]

    # music.normalise false (the official recipe): raw features in, no statistics recorded or exported
    raw_cfg = tiny_config("tiny_gpt.yaml", data_dir, work, "loop.steps=1", "music.normalise=false",
                          f"run_dir={work / 'gpt_raw'}")
    raw_stage = GPTStage(raw_cfg, work / "gpt_raw")
    assert raw_stage.music_mean is None and raw_stage.music_std is None
    np.testing.assert_array_equal(raw_stage.music[torch.from_numpy(rows)].reshape(-1, 438).numpy(), raw)
    train_stage(GPTStage, raw_cfg, progress=False)
    raw_model = export_model([work / "gpt_raw", work / "root"], tmp_path / "model_raw")
    assert load_model(raw_model).config.music_mean is None
