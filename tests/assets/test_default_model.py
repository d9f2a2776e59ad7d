"""The shipped default model and demo song: present, small, loadable, reproducible, and they dance."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from engine.checkpoint import load_model

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "assets" / "default_model"
DEMO_SONG = REPO / "assets" / "demo_song.ogg"
CONFIGS = REPO / "training" / "configs"
MAX_MODEL_BYTES = 40 * 1024 * 1024  # 20 MB solo + 15 MB the duet's follower


def _config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def test_model_is_small_enough_to_ship():
    files = [p for p in MODEL_DIR.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert sum(p.stat().st_size for p in files) <= MAX_MODEL_BYTES


def test_model_loads_and_says_what_trained_it():
    model = load_model(MODEL_DIR)
    cfg = model.config
    assert cfg.feature_mode == "full"  # trained with live rhythm columns
    assert "train_default.sh" in cfg.description
    # the shipped sizes are the ones in the configs that train_default.sh runs
    vq, gpt = _config("default_vqvae.yaml")["vqvae"], _config("default_gpt.yaml")["gpt"]
    assert (cfg.vqvae.width, cfg.vqvae.emb_width, cfg.vqvae.l_bins) == (vq["width"], vq["emb_width"], vq["l_bins"])
    assert cfg.vqvae.with_root_decoder  # the root stage ran: dances travel
    assert (cfg.gpt.n_embd, cfg.gpt.n_layer_base, cfg.gpt.n_layer_head) == (
        gpt["n_embd"], gpt["n_layer_base"], gpt["n_layer_head"])
    assert cfg.gpt.vocab_size_up == cfg.vqvae.l_bins and cfg.gpt.n_layer_critic == 0
    assert "default_actor_critic" in cfg.source  # the GPT went through all four stages
    # the pose decoders went through the decoder stage, with its speed weight
    assert "default_decoder" in cfg.source and cfg.vqvae.speed == _config("default_decoder.yaml")["vqvae"]["speed"]
    raw = json.loads((MODEL_DIR / "config.json").read_text())
    assert raw["feature_mode"] == "full"


def test_model_has_the_styles_and_its_own_decoding():
    from engine.checkpoint import load_model
    from training.data.styles import STYLES

    cfg = load_model(MODEL_DIR).config
    assert cfg.styles == list(STYLES) and cfg.gpt.n_styles == len(STYLES)
    assert set(cfg.style_starts) == set(STYLES)  # choose-start picked a start for every style
    # sampled (greedy collapses onto slow codes), the style steered with guidance 2.5; choose-start set a
    # temperature for "any" and for every style, higher where the style's dances were slow (never below 1)
    assert cfg.decoding["greedy"] is False and cfg.decoding["style_guidance"] == 2.5
    assert set(cfg.style_decoding) == set(STYLES)
    temperatures = {s: cfg.decoding_for(s)["temperature"] for s in ("any", *STYLES)}
    assert all(1.0 <= t <= 1.5 for t in temperatures.values()), temperatures
    assert temperatures["salsa"] == 1.0 and temperatures["ballet"] > 1.0 and temperatures["indian"] > 1.0


def test_configs_hold_the_measurement_song_out():
    songs = _config("default_actor_critic.yaml")["actor_critic"]["songs"]
    assert not any("hungarian_dance_5" in s for s in songs)
    splits = {(c["data"]["val_fraction"], c["data"]["seed"]) for c in
              (_config(f"default_{s}.yaml") for s in ("vqvae", "root", "decoder", "gpt"))}
    assert len(splits) == 1  # one held-out split in every stage


def test_demo_song_has_its_stated_tempo(tmp_path):
    import soundfile

    from assets.make_demo_song import DEMO_BPM
    from engine.audio import extract_features

    audio, sr = soundfile.read(DEMO_SONG)
    assert audio.ndim == 1 and 30.0 <= len(audio) / sr <= 40.0
    feats = extract_features(DEMO_SONG, "full", with_beats=True, cache_dir=tmp_path)
    intervals = np.diff(np.asarray(feats.beats)) / 60.0  # beat frames are 60 fps
    assert len(intervals) > 40
    assert np.median(intervals) == pytest.approx(60.0 / DEMO_BPM, rel=0.05)


def test_demo_song_script_reproduces_the_song(tmp_path):
    import soundfile

    from assets.make_demo_song import make_demo_song

    fresh, sr = soundfile.read(make_demo_song(tmp_path / "song.ogg"))
    shipped, sr_shipped = soundfile.read(DEMO_SONG)
    assert sr == sr_shipped and abs(len(fresh) - len(shipped)) <= sr // 100
    n = min(len(fresh), len(shipped))
    corr = np.corrcoef(fresh[:n], shipped[:n])[0, 1]  # lossy codec: the same sound, not the same bytes
    assert corr > 0.99


def _demo_dances(tmp_path, seconds: float | None = None, shuffle_seeds: tuple[int, ...] = (), seed: int = 0,
                 **options):
    """The default model's dance (its default decoding from ``seed``, default start, positions; ``options``
    for ``GenerateOptions``) to the demo song or its first seconds, and one dance per shuffle seed to the
    song shuffled in time (``training.metrics.beats.shuffled_in_time``); model and features are loaded once."""
    import soundfile
    import torch

    from engine.generate import Choreographer, GenerateOptions
    from training.metrics.beats import shuffled_in_time

    torch.set_num_threads(1)
    song = DEMO_SONG
    if seconds is not None:
        audio, sr = soundfile.read(DEMO_SONG)
        song = tmp_path / f"demo_{seconds:g}s.wav"
        soundfile.write(song, audio[: int(seconds * sr)], sr)
    chor = Choreographer(MODEL_DIR)
    features = chor.features(song)
    opts = GenerateOptions(rotations=False, **options)
    if seed:  # as measure_default_model.py makes its variations
        opts = dataclasses.replace(opts, sampling=dataclasses.replace(opts.sampling, greedy=False, seed=seed))
    shuffled = [chor.generate(song, opts, features=shuffled_in_time(features, seed)) for seed in shuffle_seeds]
    return chor.generate(song, opts, features=features), shuffled


@pytest.mark.slow
def test_default_model_dances_to_the_demo_song(tmp_path):
    from training.metrics.physical import longest_frozen_seconds, mean_joint_speed

    dance, _ = _demo_dances(tmp_path, seconds=12.0)
    joints = dance.joints
    assert joints.shape[1:] == (24, 3) and np.isfinite(joints).all() and len(joints) >= 11 * 60
    assert mean_joint_speed(joints, 60.0) > 0.2  # alive: m/s averaged over joints
    assert longest_frozen_seconds(joints, 60.0) <= 2.0
    from engine.sampling import longest_repeat

    assert longest_repeat(dance.codes_up, dance.codes_down) <= 15  # no pair held over 2 s (the repeat limit)


@pytest.mark.slow
def test_default_salsa_moves_like_real_salsa_and_the_styles_differ(tmp_path, data_dir):
    """Issue #12's "alive" figures on the demo song's first 12 s: the salsa dance moves at 0.7-1.3x the
    speed of real salsa takes at their true frame rate (this model decoded greedily moves at 0.12x of
    one of them: the reason its default decoding samples) and its feet skate no more than 1.2x theirs
    (with the engine's foot lock and planting 0.6x; 2.1x without either, 1.4x with the lock alone);
    asked for ballet, it is another dance."""
    from training.data import load_bvh_clip
    from training.metrics.physical import foot_skating_ratio, mean_joint_speed

    takes = [load_bvh_clip(data_dir / "cmu_salsa_duet" / f"{n}.bvh").joints for n in ("60_02", "60_05", "61_10")]
    weights = [len(j) for j in takes]
    real = np.average([mean_joint_speed(j, 60.0) for j in takes], weights=weights)
    real_skating = np.average([foot_skating_ratio(j, 60.0) for j in takes], weights=weights)
    salsa, _ = _demo_dances(tmp_path, seconds=12.0, style="salsa")
    assert 0.7 <= mean_joint_speed(salsa.joints, 60.0) / real <= 1.3
    assert foot_skating_ratio(salsa.joints, 60.0) <= 1.2 * real_skating
    ballet, _ = _demo_dances(tmp_path, seconds=12.0, style="ballet")
    assert not np.array_equal(ballet.codes_up, salsa.codes_up)


def _beat_figures(dance, controls) -> dict[str, float]:
    from training.metrics.beats import beat_align_score, beat_timing

    timing = beat_timing(dance.music_beats, dance.joints)
    return {
        "bas": beat_align_score(dance.music_beats, dance.joints),
        "bas_shuffled": float(np.mean([beat_align_score(dance.music_beats, c.joints) for c in controls])),
        "on_beat": timing["on_beat_fraction"], "chance": timing["chance_on_beat_fraction"],
    }


@pytest.mark.slow
def test_default_dances_follow_the_demo_songs_beat(tmp_path):
    """Issue #12's criterion for the engine's default dances on a held-out song, as
    benchmarks/measure_default_model.py applies it (the default dance and two more seeds, beat sync on):
    mean BAS >= 0.30 and >= 1.5x the same dances to the song shuffled in time; and each dance's moves on
    the beat well above chance (the share of motion beats within 3 frames of a music beat). One dance
    alone varies: this model's first six seeds score 0.30-0.46 against 0.15-0.26 shuffled."""
    figures = [_beat_figures(*_demo_dances(tmp_path, shuffle_seeds=(0, 1), seed=seed)) for seed in (0, 1, 2)]
    bas, shuffled = np.mean([f["bas"] for f in figures]), np.mean([f["bas_shuffled"] for f in figures])
    assert bas >= 0.30 and bas >= 1.5 * shuffled, figures
    assert all(f["on_beat"] >= 1.5 * f["chance"] for f in figures), figures


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "known gap of the default model (issues #5 and #12, assets/MODEL_CARD.md 'Missed targets'): without beat "
    "sync its moves do not land on the beats (no better than with the music shuffled in time); strict, so "
    "a model that fixes it turns this into a failure until the marker is removed"))
def test_default_model_alone_follows_the_demo_songs_beat(tmp_path):
    """The same criterion on the model's own timing (beat sync off)."""
    figures = _beat_figures(*_demo_dances(tmp_path, shuffle_seeds=(0, 1), beat_sync=None))
    assert figures["bas"] >= 0.22 and figures["bas"] >= 1.2 * figures["bas_shuffled"], figures
    assert figures["on_beat"] >= 1.5 * figures["chance"], figures


def test_default_follower_dances_with_a_held_out_leader(data_dir):
    """The shipped follower on the couple no stage saw: placed around the leader, never through him, not
    his mirror image, moving (benchmarks/measure_duet.py measures it fully)."""
    from engine.generate import Choreographer, GenerateOptions
    from training.data.duet import load_duet
    from training.metrics import duet as m

    couple = load_duet(data_dir / "cmu_salsa_duet" / "60_11.bvh", data_dir / "cmu_salsa_duet" / "61_11.bvh")
    leader = couple.leader[:1200].astype(np.float64)  # 20 s
    model = load_model(MODEL_DIR)
    assert model.follower is not None and model.config.follower.n_relpos == 384
    follower = Choreographer(MODEL_DIR).accompany(leader, options=GenerateOptions(rotations=False)).joints
    got = m.duet_measures(leader[: len(follower)], follower.astype(np.float64))
    assert 0.35 < got["median_distance_m"] < 0.9 and got["in_front"] > 0.5
    assert got["torso_clash"] <= 0.02 and got["mirror_copy_distance_m"] > 0.10
    speed = np.linalg.norm(np.diff(follower, axis=0), axis=-1).mean() * 60
    assert speed > 0.2  # m/s: dancing, not standing
