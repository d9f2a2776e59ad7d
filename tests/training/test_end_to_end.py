"""All four stages on the real data (tiny sizes, a few steps each), exported, then used by the engine."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.checkpoint import load_model
from tests.training.test_stages import tiny_config
from training.cli import main as training_main
from training.config import REPO_ROOT
from training.data.styles import STYLES
from training.stages.actor_critic import ROLLOUT_FILE, ActorCriticStage
from training.stages.common import read_run, train_stage
from training.stages.decoder import DecoderStage
from training.stages.gpt import CODES_FILE, GPTStage
from training.stages.root import RootStage
from training.stages.vqvae import VQVAEStage


@pytest.mark.slow
def test_four_stages_export_and_generate(data_dir, short_song, tmp_path, one_thread):
    work = tmp_path / "runs"
    train_stage(VQVAEStage, tiny_config("tiny_vqvae.yaml", data_dir, work, "loop.steps=8"), progress=False)
    train_stage(RootStage, tiny_config("tiny_root.yaml", data_dir, work, "loop.steps=4"), progress=False)
    gpt_cfg = tiny_config("tiny_gpt.yaml", data_dir, work, "loop.steps=6", "gpt.n_styles=4", "gpt.style_pdrop=0.2")
    train_stage(GPTStage, gpt_cfg, progress=False)
    song = short_song(6.0, name="ac_song", offset=5.0)
    ac_cfg = tiny_config("tiny_actor_critic.yaml", data_dir, work, "loop.steps=12", "actor_critic.rollout_every=6",
                         f"actor_critic.songs=[{song}]", "actor_critic.reward=balanced",
                         "actor_critic.half_body_rate=0.5", "actor_critic.kl_weight=0.1", "loop.log_every=1",
                         "actor_critic.rollouts_per_song=2", "actor_critic.rollout_temperature=1.0",
                         "actor_critic.rollout_styles=[any,street]", "actor_critic.rollout_style_guidance=2.0",
                         "actor_critic.speed_reward=1.0")
    ac_model = train_stage(ActorCriticStage, ac_cfg, progress=False)

    # the GPT saw synthesised accompaniment with live rhythm columns (music-less clips)
    with np.load(work / "gpt" / CODES_FILE) as cached:
        # music per clip token (438 columns), the rhythm columns live
        assert cached["music"].shape[1:] == (438,) and np.abs(cached["music"][:, 53:]).sum() > 0
        assert cached["up"].shape[1] == 30 and cached["up"].max() < 64
    assert len(list((work / "accompaniment").glob("*.wav"))) >= 3

    # actor-critic: the base is frozen, the actor head and the critic learned, two rollouts happened
    gpt_weights = read_run(work / "gpt", ("gpt",))["model"]
    tuned = ac_model.gpt.state_dict()
    for key, value in gpt_weights.items():
        if key.startswith("gpt_base."):
            torch.testing.assert_close(tuned[key], value, rtol=0, atol=0, msg=key)
    assert any(not torch.equal(tuned[k], v) for k, v in gpt_weights.items() if k.startswith("gpt_head."))
    gpt_effective = read_run(work / "gpt", ("gpt",))["config"]["effective"]
    ac_effective = read_run(work / "actor_critic", ("actor-critic",))["config"]["effective"]
    with np.load(work / "actor_critic" / ROLLOUT_FILE) as rollout:
        assert int(rollout["epoch"]) == 1 and rollout["up0"].shape == (46,)  # one token per 7.5 fps frame: 1 + 6 s * 3840 // 512
        # two dances sampled from the policy for the one song in each style: "any" from the run's start,
        # street (style input 3) from street's, different continuations
        assert int(rollout["songs"]) == 4 and rollout["styles"].tolist() == [0, 0, 3, 3]
        assert [rollout[f"up{i}"][0] for i in range(4)] == [gpt_effective["default_start"][0]] * 2 + \
            [gpt_effective["style_starts"]["street"][0]] * 2
        assert not np.array_equal(rollout["up0"], rollout["up1"])
    # the speed each style aims at: its training takes' (the tiny data is all street dance)
    from training.data.sources import load_split
    from training.metrics.physical import mean_joint_speed
    takes = load_split(gpt_cfg.data).train
    expected_speed = np.mean([mean_joint_speed(c.joints, 60.0) for c in takes])
    assert ac_effective["speed_targets"] == pytest.approx({"any": expected_speed, "street": expected_speed})
    from training.errors import ConfigError

    def stage(*extra: str) -> ActorCriticStage:
        return ActorCriticStage(tiny_config("tiny_actor_critic.yaml", data_dir, work, f"actor_critic.songs=[{song}]",
                                            *extra), work / "ac_other")

    with pytest.raises(ConfigError, match="'waltz' is not a style of the gpt run"):
        stage("actor_critic.rollout_styles=[any,waltz]")
    # speed_styles: only those rollouts are paid for speed
    paid = stage("actor_critic.rollout_styles=[any,street]", "actor_critic.speed_reward=1.0",
                 "actor_critic.speed_styles=[street]")
    assert paid.speed_targets == pytest.approx({"street": expected_speed})
    with pytest.raises(ConfigError, match=r"speed_styles \['ballet'\] are not among the rollout styles"):
        stage("actor_critic.rollout_styles=[any,street]", "actor_critic.speed_reward=1.0",
              "actor_critic.speed_styles=[ballet]")
    with pytest.raises(ConfigError, match="tune 'styles' needs a gpt run with styles"):
        stage("actor_critic.tune=styles")  # rollouts in "any" only: no style row to tune
    # tune "styles": only the street row of the style embedding learns; the head, the base and every
    # other style (and "any") are the GPT's
    rows_run = train_stage(ActorCriticStage, tiny_config(
        "tiny_actor_critic.yaml", data_dir, work, "loop.steps=5", "actor_critic.rollout_every=5",
        f"actor_critic.songs=[{song}]", "actor_critic.rollout_temperature=1.0", "actor_critic.tune=styles",
        "actor_critic.rollout_styles=[street]", "actor_critic.speed_reward=1.0", "optim.lr=1.0e-3",
        f"run_dir={work / 'ac_styles'}"), progress=False).gpt.state_dict()
    street = 1 + STYLES.index("street")
    for key, value in gpt_weights.items():
        if key != "gpt_base.style_emb.weight":
            torch.testing.assert_close(rows_run[key], value, rtol=0, atol=0, msg=key)
    tuned_rows = rows_run["gpt_base.style_emb.weight"]
    before_rows = gpt_weights["gpt_base.style_emb.weight"]
    assert not torch.equal(tuned_rows[street], before_rows[street])
    others = [i for i in range(len(STYLES) + 1) if i != street]
    torch.testing.assert_close(tuned_rows[others], before_rows[others], rtol=0, atol=0)
    with open(work / "actor_critic" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"actor", "critic", "reward", "kl", "speed_any", "speed_street"} <= set(rows[0])
    assert all(0 < float(r["speed_street"]) < 5 for r in rows)  # each style's rollouts, m/s
    kl = [float(r["kl"]) for r in rows if r["kl"]]  # actor steps 1-5, 11-12: KL to the GPT before fine-tuning
    assert len(kl) == 7 and kl[0] < 1e-4 and kl[-1] > kl[0]  # starts at the reference, then moves off it

    # export from the actor-critic run alone: the VQ-VAE is found through the runs' records
    model_dir = tmp_path / "model"
    assert training_main(["export", "--run", str(work / "actor_critic"), "-o", str(model_dir)]) == 0
    config = json.loads((model_dir / "config.json").read_text())
    assert config["feature_mode"] == "full" and config["gpt"]["n_layer_critic"] == 0
    assert config["vqvae"]["with_root_decoder"] is True and config["vqvae"]["l_bins"] == 64
    assert config["styles"] == list(STYLES)  # the style input came through the actor-critic stage
    # with the decoder stage's run among the runs, its fine-tuned pose decoders are the model's
    decoder = train_stage(DecoderStage, tiny_config("tiny_decoder.yaml", data_dir, work, "loop.steps=2"),
                          progress=False).vqvae
    assert training_main(["export", "--run", str(work / "actor_critic"), "--run", str(work / "root"),
                          "--run", str(work / "decoder"), "-o", str(tmp_path / "model_decoder")]) == 0
    exported = load_model(tmp_path / "model_decoder").vqvae.state_dict()
    assert all(torch.equal(exported[k], v) for k, v in decoder.state_dict().items())
    assert load_model(tmp_path / "model_decoder").config.vqvae.speed == 16.0

    # choose-start: each of the 3 most common first pairs dances; the pick follows the rule and lands in the config
    from training.choose_start import candidate_starts, choose_start, pick_start, pick_temperature

    # (the tiny data is all street dance: "any" and "street" get a start, the other styles have no windows)
    result = choose_start(model_dir, gpt_cfg, [song], top=3, seconds=3.0, temperatures=[0.8, 1.3])["styles"]
    assert set(result) == {"any", "street"}
    with np.load(work / "gpt" / CODES_FILE) as cached:
        expected = candidate_starts(cached["up"], cached["down"], 3)
    for r in result.values():
        assert r["chosen"] == pick_start(r["candidates"], r["training_speed"], r["training_skating"])["start"]
    assert [tuple(r["start"]) for r in result["any"]["candidates"]] == expected
    for r in result.values():  # each style's temperature by the same rule, from its chosen start
        assert [row["temperature"] for row in r["temperatures"]] == [0.8, 1.3]
        assert all(row["start"] == r["chosen"] for row in r["temperatures"])
        assert r["temperature"] == pick_temperature(r["temperatures"], r["training_speed"],
                                                    r["training_skating"])["temperature"]
    rewritten = json.loads((model_dir / "config.json").read_text())
    assert rewritten["default_start"] == result["any"]["chosen"]
    assert rewritten["style_starts"] == {"street": result["street"]["chosen"]}
    assert rewritten["decoding"] == {**config.get("decoding", {}), "temperature": result["any"]["temperature"]}
    assert rewritten["style_decoding"] == {"street": {"temperature": result["street"]["temperature"]}}
    changed = ("default_start", "style_starts", "decoding", "style_decoding")
    assert {k: v for k, v in rewritten.items() if k not in changed} == \
        {k: v for k, v in config.items() if k not in changed}  # nothing else changed

    # the engine uses it on a real song
    clip = short_song(4.0, name="dance_song", offset=20.0)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", DANCE_CACHE_DIR=str(tmp_path / "feature_cache"))
    proc = subprocess.run([sys.executable, "-m", "engine", "generate", str(clip), "-o", str(out), "--model",
                           str(model_dir), "-q", "--formats", "npz,bvh"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(out / "dance_song.npz") as dance:
        joints = dance["joints"]
        assert joints.ndim == 3 and joints.shape[1:] == (24, 3) and np.isfinite(joints).all()
        assert joints.shape[0] == 8 * len(dance["codes_up"]) and len(dance["codes_up"]) == 31  # 1 + 4 s * 3840 // 512
    assert (out / "dance_song.bvh").read_text().startswith("HIERARCHY")
