"""The whole engine path on a real song with a tiny random-init model, the CLI contract, bad input."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine import cli
from engine.beats import BeatSyncOptions
from engine.checkpoint import build_model, debug_model_config, save_model
from engine.dance import Dance
from engine.dance_files import write_dance
from engine.errors import Cancelled, InvalidOptionError, OutputError
from engine.generate import Choreographer, GenerateOptions
from engine.postprocess import sole_height
from engine.sampling import SamplingOptions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "tiny"
    model = build_model(debug_model_config())
    for book in model.vqvae.codebooks:  # an untrained codebook is all zeros: every code would look alike
        book.k.normal_(std=0.5)
    model.vqvae.restore_codebook_statistics()
    save_model(model, out)
    return out


@pytest.fixture(scope="module")
def short_song(music_dir, tmp_path_factory) -> Path:
    """Six seconds of a real song, as a wav."""
    audio, sr = sf.read(music_dir / "vibe_ace.ogg", dtype="float32", frames=44100 * 12)
    path = tmp_path_factory.mktemp("songs") / "vibe_ace_cut.wav"
    sf.write(path, audio[44100 * 6:], sr)
    return path


@pytest.fixture(scope="module")
def choreographer(tiny_model_dir) -> Choreographer:
    return Choreographer(tiny_model_dir)


def test_generate_real_song(choreographer, short_song):
    feats = choreographer.features(short_song)
    seen = []
    dance = choreographer.generate(short_song, progress=lambda f, m: seen.append(f), features=feats)
    n_tokens = feats.features.shape[0]
    assert isinstance(dance, Dance)
    assert dance.codes_up.shape == (n_tokens,) and dance.codes_down.shape == (n_tokens,)
    assert dance.joints.shape == (8 * n_tokens, 24, 3) and dance.fps == 60.0
    assert abs(dance.duration - 6.0) < 0.3
    # Grounded: the soles touch the floor and never sink through it.
    soles = sole_height(dance.joints)
    assert soles.min() > -1e-3 and np.percentile(soles, 5) < 0.02
    assert dance.rotations.shape == (dance.num_frames, 24, 4)
    np.testing.assert_allclose(np.linalg.norm(dance.rotations, axis=-1), 1.0, atol=1e-6)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert dance.music_beats is not None and np.all(dance.music_beats < dance.num_frames)


def test_start_codes_and_resampling(choreographer, short_song):
    feats = choreographer.features(short_song)
    a = choreographer.generate(short_song, GenerateOptions(start_codes=(1, 2), fps=30.0), features=feats)
    assert a.codes_up[0] == 1 and a.codes_down[0] == 2
    assert a.fps == 30.0 and abs(a.num_frames - 4 * len(a.codes_up)) <= 1
    with pytest.raises(InvalidOptionError, match="out of range"):
        choreographer.generate(short_song, GenerateOptions(start_codes=(10_000, 0)), features=feats)
    with pytest.raises(InvalidOptionError, match="fps"):
        choreographer.generate(short_song, GenerateOptions(fps=25.0), features=feats)


def test_seeded_variations_differ_and_repeat(choreographer, short_song):
    feats = choreographer.features(short_song)

    def run(seed):
        opts = GenerateOptions(sampling=SamplingOptions(greedy=False, temperature=1.0, seed=seed), rotations=False)
        return choreographer.generate(short_song, opts, features=feats).codes_up

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


@pytest.mark.parametrize("free_cores", [1, 2])
def test_variations_in_one_batch_are_the_dances_made_one_by_one(choreographer, short_song, monkeypatch, free_cores):
    from engine import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 2 - free_cores)
    feats = choreographer.features(short_song)
    variations = [
        GenerateOptions(sampling=SamplingOptions(greedy=False, seed=3)),
        GenerateOptions(sampling=SamplingOptions(greedy=False, seed=4, temperature=0.5), fps=30.0),
        GenerateOptions(sampling=SamplingOptions(greedy=True), start_codes=(1, 2), beat_sync=None),
    ]
    seen = []
    batch = choreographer.generate_many(short_song, variations, features=feats,
                                        progress=lambda fraction, message: seen.append(message))
    assert any("Dancing 3 variations" in m for m in seen)  # one batch through the GPT
    for options, dance in zip(variations, batch):
        alone = choreographer.generate(short_song, options, features=feats)
        np.testing.assert_array_equal(dance.codes_up, alone.codes_up)
        np.testing.assert_array_equal(dance.codes_down, alone.codes_down)
        np.testing.assert_array_equal(dance.joints, alone.joints)
        assert dance.fps == alone.fps and dance.meta["sampling"] == alone.meta["sampling"]
        assert dance.meta["threads"] == alone.meta["threads"] == 1
        assert dance.meta["timings"]["gpt_threads"] == free_cores  # the batch's GPT on the free cores


def test_cancel_raises_and_writes_nothing(choreographer, short_song, tmp_path):
    with pytest.raises(Cancelled):
        choreographer.generate(short_song, cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_preview_and_encode_pose(choreographer):
    a = choreographer.preview_pose(0, 0)
    b = choreographer.preview_pose(5, 9)
    assert a.shape == (24, 3) and not np.allclose(a, b)
    up, down = choreographer.encode_pose(a)
    n_up, n_down = choreographer.vocab_sizes
    assert 0 <= up < n_up and 0 <= down < n_down
    # Round trip: the nearest pair of a pair's preview reproduces that preview.
    for pair in [(5, 9), (17, 3), (40, 61)]:
        pose = choreographer.preview_pose(*pair)
        moved = pose + np.array([0.3, 0.0, -1.2])  # anywhere in the room: only the shape counts
        np.testing.assert_allclose(choreographer.preview_pose(*choreographer.encode_pose(moved)), pose, atol=1e-5)
    with pytest.raises(InvalidOptionError):
        choreographer.encode_pose(np.zeros((23, 3)))


def test_export_is_all_or_nothing(choreographer, short_song, tmp_path, monkeypatch):
    dance = choreographer.generate(short_song)
    import engine.dance_files as export

    def broken_bvh(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_bvh", broken_bvh)
    with pytest.raises(OutputError, match="disk full"):
        write_dance(dance, tmp_path, "song")
    assert list(tmp_path.iterdir()) == []


def test_exported_files_have_the_umask_permissions(choreographer, short_song, tmp_path):
    """Not mkstemp's 0600: the files are the user's ordinary files (0644 under umask 022)."""
    dance = choreographer.generate(short_song, GenerateOptions(beat_sync=None))
    old = os.umask(0o027)
    try:
        files = write_dance(dance, tmp_path / "a", "song")
    finally:
        os.umask(old)
    assert {fmt: stat.S_IMODE(p.stat().st_mode) for fmt, p in files.items()} == {f: 0o640 for f in files}
    files = write_dance(dance, tmp_path / "b", "song")
    assert {stat.S_IMODE(p.stat().st_mode) for p in files.values()} == {0o666 & ~old}


def test_beat_sync_only_retimes_and_is_recorded(choreographer, short_song, monkeypatch):
    feats = choreographer.features(short_song)
    plain = choreographer.generate(short_song, GenerateOptions(beat_sync=None, rotations=False), features=feats)
    off = choreographer.generate(short_song, GenerateOptions(beat_sync=BeatSyncOptions(strength=0.0),
                                                             rotations=False), features=feats)
    synced = choreographer.generate(short_song, GenerateOptions(rotations=False), features=feats)  # the default
    assert plain.meta["beat_sync"] is None
    np.testing.assert_array_equal(off.joints, plain.joints)  # strength 0 is the model's own timing
    np.testing.assert_array_equal(synced.codes_up, plain.codes_up)  # same codes, only re-timed
    assert synced.joints.shape == plain.joints.shape
    record = synced.meta["beat_sync"]
    assert record["strength"] == 1.0 and record["pairs"] >= 1 and record["music_beats"] >= 10
    assert not np.array_equal(synced.joints, plain.joints)
    # a bad strength is refused before the slow part runs
    monkeypatch.setattr("engine.generate.sample_codes", lambda *a, **k: pytest.fail("the GPT ran"))
    with pytest.raises(InvalidOptionError, match="strength"):
        choreographer.generate(short_song, GenerateOptions(beat_sync=BeatSyncOptions(strength=-0.5)), features=feats)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_cli_generate_contract(tiny_model_dir, short_song, tmp_path):
    out = tmp_path / "out"
    proc = _run_cli("generate", str(short_song), "-o", str(out), "--model", str(tiny_model_dir), "-q")
    assert proc.returncode == 0, proc.stderr
    data = np.load(out / f"{short_song.stem}.npz")
    assert data["joints"].ndim == 3 and data["joints"].shape[1:] == (24, 3)
    assert float(data["fps"]) == 60.0
    assert data["codes_up"].shape == data["codes_down"].shape
    assert data["poses"].shape == (data["joints"].shape[0], 72) and data["trans"].shape[1] == 3
    assert (out / f"{short_song.stem}.bvh").read_text().startswith("HIERARCHY")
    assert (out / f"{short_song.stem}.json").exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_cli_variations_are_the_seeds_alone(tiny_model_dir, short_song, tmp_path):
    out = tmp_path / "out"
    proc = _run_cli("generate", str(short_song), "-o", str(out), "--model", str(tiny_model_dir), "-q",
                    "--formats", "npz", "--variations", "3", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{short_song.stem}_v{i}.npz" for i in (1, 2, 3)]
    assert "3 dances" in proc.stdout
    alone = tmp_path / "alone"
    proc = _run_cli("generate", str(short_song), "-o", str(alone), "--model", str(tiny_model_dir), "-q",
                    "--formats", "npz", "--seed", "6")
    assert proc.returncode == 0, proc.stderr
    second, own = np.load(out / f"{short_song.stem}_v2.npz"), np.load(alone / f"{short_song.stem}.npz")
    np.testing.assert_array_equal(second["codes_up"], own["codes_up"])  # variation 2 is seed 6's dance
    np.testing.assert_array_equal(second["codes_down"], own["codes_down"])
    proc = _run_cli("generate", str(short_song), "-o", str(tmp_path / "none"), "--model", str(tiny_model_dir),
                    "--variations", "0")
    assert proc.returncode != 0 and "--variations must be at least 1" in proc.stderr
    assert not (tmp_path / "none").exists()


def test_cli_bad_inputs_write_nothing(tiny_model_dir, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not the droids")
    out = tmp_path / "out"
    proc = _run_cli("generate", str(not_audio), "-o", str(out), "--model", str(tiny_model_dir), "-q")
    assert proc.returncode == cli.EXIT_ERROR
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert not out.exists() or list(out.iterdir()) == []

    proc = _run_cli("generate", str(not_audio), "-o", str(out), "--model", str(tmp_path / "no_model"), "-q")
    assert proc.returncode == cli.EXIT_ERROR and "Traceback" not in proc.stderr
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("option, message", [(("--beat-sync", "1.5"), "strength"), (("--max-hold", "-1"), "hold")])
def test_cli_bad_timing_options_write_nothing(tiny_model_dir, short_song, tmp_path, option, message):
    out = tmp_path / "out"
    proc = _run_cli("generate", str(short_song), "-o", str(out), "--model", str(tiny_model_dir), "-q", *option)
    assert proc.returncode == cli.EXIT_ERROR, proc.stderr
    assert proc.stderr.startswith("error:") and message in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_interrupt_leaves_no_files(tiny_model_dir, short_song, tmp_path, monkeypatch, capsys):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Choreographer, "generate", interrupted)
    out = tmp_path / "out"
    rc = cli.main(["generate", str(short_song), "-o", str(out), "--model", str(tiny_model_dir), "-q"])
    assert rc == cli.EXIT_INTERRUPTED
    assert not out.exists() or list(out.iterdir()) == []


def test_draft_keeps_tokens_and_approximate_runs(choreographer, short_song):
    feats = choreographer.features(short_song)
    plain = choreographer.generate(short_song, GenerateOptions(rotations=False), features=feats)
    drafted = choreographer.generate(
        short_song, GenerateOptions(sampling=SamplingOptions(draft="int8"), rotations=False), features=feats)
    np.testing.assert_array_equal(plain.codes_up, drafted.codes_up)
    np.testing.assert_array_equal(plain.codes_down, drafted.codes_down)
    approx = choreographer.generate(short_song, GenerateOptions(precision="int8", rotations=False), features=feats)
    assert approx.codes_up.shape == plain.codes_up.shape and approx.meta["precision"] == "int8"
    with pytest.raises(InvalidOptionError, match="precision"):
        choreographer.generate(short_song, GenerateOptions(precision="float8"), features=feats)


def test_music_statistics_are_applied_before_the_gpt(tiny_model_dir, short_song):
    """A model whose config carries music statistics dances differently on the same song; identity
    statistics (mean 0, std 1) change nothing."""
    from dataclasses import replace

    from engine.checkpoint import DanceModel, load_model

    plain = load_model(tiny_model_dir)
    feats = Choreographer(plain).features(short_song)
    options = GenerateOptions()
    base = Choreographer(plain).generate(short_song, features=feats, options=options)

    def with_stats(mean, std) -> Choreographer:
        return Choreographer(DanceModel(replace(plain.config, music_mean=mean, music_std=std), plain.vqvae, plain.gpt))

    n = plain.config.gpt.n_music
    identity = with_stats([0.0] * n, [1.0] * n).generate(short_song, features=feats, options=options)
    np.testing.assert_array_equal(identity.codes_up, base.codes_up)
    np.testing.assert_array_equal(identity.codes_down, base.codes_down)

    mean = feats.features.mean(axis=0).tolist()
    std = np.maximum(feats.features.std(axis=0), 1e-3).tolist()
    standardised = with_stats(mean, std).generate(short_song, features=feats, options=options)
    assert not (np.array_equal(standardised.codes_up, base.codes_up)
                and np.array_equal(standardised.codes_down, base.codes_down))


# --- style control ------------------------------------------------------------------------------------------
def test_the_style_steers_the_dance_and_is_recorded(styled_model_dir, short_song, tmp_path):
    chor = Choreographer(styled_model_dir)
    feats = chor.features(short_song)
    options = GenerateOptions(rotations=False, beat_sync=None)
    dances = {style: chor.generate(short_song, dataclasses.replace(options, style=style), features=feats)
              for style in ("any", "salsa", "ballet")}
    assert dances["salsa"].meta["style"] == "salsa" and dances["any"].meta["style"] == "any"
    assert not np.array_equal(dances["salsa"].codes_up, dances["ballet"].codes_up)
    assert not np.array_equal(dances["any"].codes_up, dances["salsa"].codes_up)
    # a style with its own start pair begins there; the others at the model's default start
    assert (dances["ballet"].codes_up[0], dances["ballet"].codes_down[0]) == (5, 7)
    assert (dances["salsa"].codes_up[0], dances["salsa"].codes_down[0]) == (0, 0)
    # the same style twice: the same dance (greedy), exact and fast decoding agree
    again = chor.generate(short_song, dataclasses.replace(options, style="salsa"), features=feats)
    np.testing.assert_array_equal(again.codes_up, dances["salsa"].codes_up)
    exact = dataclasses.replace(options, style="salsa",
                                sampling=SamplingOptions(fast=False, shift=20))
    np.testing.assert_array_equal(chor.generate(short_song, exact, features=feats).codes_up,
                                  dances["salsa"].codes_up)
    path = write_dance(dances["ballet"], tmp_path, "ballet", formats=("json",))["json"]
    assert '"style": "ballet"' in Path(path).read_text()


def test_an_unknown_style_is_refused_before_any_work(styled_model_dir, tiny_model_dir, short_song, monkeypatch):
    chor = Choreographer(styled_model_dir)
    monkeypatch.setattr(chor, "features", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(InvalidOptionError, match=r"unknown style 'tango': this model knows any, salsa, ballet"):
        chor.generate(short_song, GenerateOptions(style="tango"))
    plain = Choreographer(tiny_model_dir)
    monkeypatch.setattr(plain, "features", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(InvalidOptionError, match="this model has no styles"):
        plain.generate(short_song, GenerateOptions(style="salsa"))


def test_cli_style_flag(styled_model_dir, short_song, tmp_path):
    out = tmp_path / "out"
    proc = _run_cli("generate", str(short_song), "-o", str(out), "--model", str(styled_model_dir), "-q",
                    "--style", "tango")
    assert proc.returncode == cli.EXIT_ERROR and "unknown style 'tango'" in proc.stderr
    assert not out.exists() or list(out.iterdir()) == []
    proc = _run_cli("generate", str(short_song), "-o", str(out), "--model", str(styled_model_dir), "-q",
                    "--style", "ballet", "--formats", "json")
    assert proc.returncode == 0, proc.stderr
    assert '"style": "ballet"' in (out / f"{short_song.stem}.json").read_text()


def test_a_models_default_decoding_applies_where_the_user_chose_none(tiny_model_dir, short_song, tmp_path):
    import json
    import shutil

    from engine.options import build_options

    sampled = tmp_path / "sampled"
    shutil.copytree(tiny_model_dir, sampled)
    config = json.loads((sampled / "config.json").read_text())
    config["decoding"] = {"greedy": False, "temperature": 1.0}
    (sampled / "config.json").write_text(json.dumps(config))
    chor = Choreographer(sampled)
    feats = chor.features(short_song)
    default = chor.generate(short_song, build_options(rotations=False), features=feats)
    assert default.meta["sampling"]["greedy"] is False and default.meta["sampling"]["seed"] == 0
    again = chor.generate(short_song, build_options(rotations=False), features=feats)
    np.testing.assert_array_equal(default.codes_up, again.codes_up)  # the default dance is always the same
    seeded = chor.generate(short_song, build_options(rotations=False, seed=0), features=feats)
    np.testing.assert_array_equal(seeded.codes_up, default.codes_up)
    greedy = chor.generate(short_song, build_options(rotations=False, greedy=True), features=feats)
    assert greedy.meta["sampling"]["greedy"] is True
    plain = Choreographer(tiny_model_dir).generate(short_song, build_options(rotations=False), features=feats)
    np.testing.assert_array_equal(greedy.codes_up, plain.codes_up)  # without a default: the official greedy
    with pytest.raises(InvalidOptionError, match="draft model checks greedy tokens"):
        chor.generate(short_song, build_options(draft="int8"), features=feats)
    proc = _run_cli("generate", str(short_song), "-o", str(tmp_path / "out"), "--model", str(sampled), "-q",
                    "--greedy", "--formats", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / f"{short_song.stem}.json").read_text())["sampling"]["greedy"] is True


def test_a_style_may_have_its_own_default_decoding(styled_model_dir, short_song, tmp_path):
    """``style_decoding``: a dance asked for that style gets its temperature where the user chose none;
    other styles and "any" keep the model's; a temperature the user gives wins."""
    import json
    import shutil

    from engine.options import build_options

    hot = tmp_path / "hot"
    shutil.copytree(styled_model_dir, hot)
    config = json.loads((hot / "config.json").read_text())
    config["decoding"] = {"greedy": False, "temperature": 1.0}
    config["style_decoding"] = {"ballet": {"temperature": 1.6}}
    (hot / "config.json").write_text(json.dumps(config))
    chor = Choreographer(hot)
    feats = chor.features(short_song)
    temperature = {style: chor.generate(short_song, build_options(rotations=False, style=style), features=feats)
                   .meta["sampling"]["temperature"] for style in ("any", "salsa", "ballet")}
    assert temperature == {"any": 1.0, "salsa": 1.0, "ballet": 1.6}
    chosen = chor.generate(short_song, build_options(rotations=False, style="ballet", temperature=0.7), features=feats)
    assert chosen.meta["sampling"]["temperature"] == 0.7
