"""Our model folder format: round trip, atomic writes, and a specific error for each bad folder."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

import engine.checkpoint as ckpt
from engine.checkpoint import (
    FORMAT_VERSION,
    MissingModelFileError,
    ModelConfig,
    ModelNotFoundError,
    NotAModelFolderError,
    UnsupportedFormatError,
    WeightsMismatchError,
    build_model,
    debug_model_config,
    load_model,
    model_info,
    save_model,
)
from engine.errors import CheckpointError


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its content (to prove an operation changed nothing)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_like_model():
    """A tiny model with non-trivial codebooks and EMA statistics (as after some training)."""
    torch.manual_seed(0)
    model = build_model(debug_model_config())
    for book in model.vqvae.codebooks:
        book.k.normal_()
        book.k_sum.normal_()
        book.k_elem.uniform_(0.5, 3.0)
        book.initialised.fill_(True)
    return model.eval()


@pytest.fixture()
def saved(tmp_path, trained_like_model) -> Path:
    return save_model(trained_like_model, tmp_path / "model")


def test_round_trip_gives_identical_outputs(saved, trained_like_model):
    assert sorted(os.listdir(saved)) == ["config.json", "gpt.safetensors", "vqvae.safetensors"]
    loaded = load_model(saved)
    assert loaded.config == trained_like_model.config
    assert not loaded.vqvae.training and not loaded.gpt.training
    for a, b in ((trained_like_model.vqvae, loaded.vqvae), (trained_like_model.gpt, loaded.gpt)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.manual_seed(1)
    codes_up, codes_down = torch.randint(0, 64, (2, 1, 6))
    music = torch.randn(1, 6, 438)
    pose = torch.randn(1, 48, 72) * 0.2
    with torch.no_grad():
        assert torch.equal(trained_like_model.vqvae.decode(codes_up, codes_down),
                           loaded.vqvae.decode(codes_up, codes_down))
        for x, y in zip(trained_like_model.vqvae.encode(pose), loaded.vqvae.encode(pose)):
            assert torch.equal(x, y)
        for x, y in zip(trained_like_model.gpt(codes_up, codes_down, music),
                        loaded.gpt(codes_up, codes_down, music)):
            assert torch.equal(x, y)


def test_config_json_is_plain_and_versioned(saved):
    raw = json.loads((saved / "config.json").read_text())
    assert raw["format_version"] == FORMAT_VERSION
    for key in ("name", "description", "source", "feature_mode", "fps", "default_start", "vqvae", "gpt"):
        assert key in raw
    assert raw["vqvae"]["l_bins"] == 64 and raw["gpt"]["n_embd"] == 32


def test_model_info_reads_without_loading(saved):
    info = model_info(saved)
    assert info["name"] == "debug-tiny"
    assert info["feature_mode"] == "full"
    model = load_model(saved)
    assert info["stored_values"]["gpt"] == sum(v.numel() for v in model.gpt.state_dict().values())
    assert info["stored_values"]["vqvae"] == sum(v.numel() for v in model.vqvae.state_dict().values())
    assert info["file_bytes"]["vqvae.safetensors"] == (saved / "vqvae.safetensors").stat().st_size


def test_saving_over_an_existing_model_replaces_it(saved, trained_like_model):
    other = build_model(debug_model_config(name="second"))
    save_model(other, saved)
    assert load_model(saved).config.name == "second"
    assert [p.name for p in saved.parent.iterdir()] == ["model"]  # no temp or backup folders left


def test_refuses_to_overwrite_a_folder_that_is_not_a_model(tmp_path, trained_like_model):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_model(trained_like_model, folder)
    assert snapshot(folder) == {"thesis.txt": b"precious"}


def test_failed_save_leaves_nothing(tmp_path, trained_like_model, monkeypatch):
    calls = []

    def failing_write(module, path, metadata):
        calls.append(path)
        if len(calls) == 2:  # the second weights file fails (disk full, ...)
            raise OSError("No space left on device")
        return real_write(module, path, metadata)

    real_write = ckpt._write_safetensors
    monkeypatch.setattr(ckpt, "_write_safetensors", failing_write)
    with pytest.raises(OSError):
        save_model(trained_like_model, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []

    # over an existing model: the old one stays intact
    monkeypatch.setattr(ckpt, "_write_safetensors", real_write)
    target = save_model(trained_like_model, tmp_path / "existing")
    before = snapshot(target)
    calls.clear()
    monkeypatch.setattr(ckpt, "_write_safetensors", failing_write)
    with pytest.raises(OSError):
        save_model(build_model(debug_model_config(name="other")), target)
    assert snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


def test_the_same_weights_give_the_same_bytes(tmp_path, trained_like_model):
    """Writing a model, reading it back and writing it again gives byte-identical files (safetensors alone
    orders its metadata differently from one write to the next), and they read as the library's own."""
    from safetensors import safe_open

    first = snapshot(save_model(trained_like_model, tmp_path / "first"))
    again = save_model(load_model(tmp_path / "first"), tmp_path / "again")
    second = snapshot(save_model(load_model(again), tmp_path / "second"))
    assert first == second and snapshot(again) == first
    with safe_open(str(tmp_path / "second" / ckpt.VQVAE_FILE), framework="pt") as f:
        assert f.metadata() == {"format": ckpt.FORMAT_NAME, "format_version": str(ckpt.FORMAT_VERSION)}
        names = set(f.keys())
    assert names == set(trained_like_model.vqvae.state_dict())


def test_missing_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    assert list(tmp_path.iterdir()) == []


def test_not_a_model_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(NotAModelFolderError):
        load_model(tmp_path)
    with pytest.raises(NotAModelFolderError):
        load_model(tmp_path / "readme.txt")
    assert snapshot(tmp_path) == {"readme.txt": b"hello"}


@pytest.mark.parametrize("missing", ["config.json", "vqvae.safetensors", "gpt.safetensors"])
def test_missing_file(saved, missing):
    (saved / missing).unlink()
    before = snapshot(saved)
    with pytest.raises(MissingModelFileError, match=missing.replace(".", r"\.")):
        load_model(saved)
    assert snapshot(saved) == before


def test_foreign_config_json_is_not_a_model(saved):
    (saved / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(NotAModelFolderError):
        load_model(saved)
    (saved / "config.json").write_text("{ not json")
    with pytest.raises(NotAModelFolderError):
        load_model(saved)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, "1"])
def test_unknown_or_newer_format_version(saved, version):
    raw = json.loads((saved / "config.json").read_text())
    raw["format_version"] = version
    (saved / "config.json").write_text(json.dumps(raw))
    before = snapshot(saved)
    with pytest.raises(UnsupportedFormatError):
        load_model(saved)
    with pytest.raises(UnsupportedFormatError):
        model_info(saved)
    assert snapshot(saved) == before


def test_config_and_weights_mismatch(saved):
    raw = json.loads((saved / "config.json").read_text())
    raw["gpt"]["n_embd"] = 64  # the weights are 32 wide
    (saved / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsMismatchError, match="wrong shape"):
        load_model(saved)
    raw["gpt"]["n_embd"] = 32
    raw["gpt"]["n_layer_head"] = 3  # one block more than stored
    (saved / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsMismatchError, match=r"missing: gpt_head\.blocks\.2\."):
        load_model(saved)
    raw["gpt"]["n_layer_head"] = 2
    raw["vqvae"]["with_root_decoder"] = False  # stored weights have decoders_root
    (saved / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsMismatchError, match=r"unexpected: vqvae_down\.decoders_root"):
        load_model(saved)


def test_invalid_config_values(saved):
    raw = json.loads((saved / "config.json").read_text())
    raw["vqvae"]["no_such_field"] = 1
    (saved / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="no_such_field"):
        load_model(saved)
    with pytest.raises(CheckpointError, match="default_start"):
        ModelConfig("x", debug_model_config().vqvae, debug_model_config().gpt, "full", default_start=(64, 0))
    with pytest.raises(CheckpointError, match="feature_mode"):
        ModelConfig("x", debug_model_config().vqvae, debug_model_config().gpt, "loud")


def test_truncated_weights(saved):
    data = (saved / "gpt.safetensors").read_bytes()
    (saved / "gpt.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(saved)


# --- music standardisation statistics ---------------------------------------------------------------------
def _stats(n: int) -> tuple[list[float], list[float]]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, generator=g).tolist(), (torch.rand(n, generator=g) * 3 + 0.1).tolist()


def test_config_without_music_statistics_loads_as_identity(saved):
    raw = json.loads((saved / "config.json").read_text())
    assert "music_mean" not in raw and "music_std" not in raw  # folders written before the fields existed
    model = load_model(saved)
    assert model.config.music_mean is None and model.config.music_std is None
    music = torch.randn(5, model.config.gpt.n_music) * 100
    assert torch.equal(model.config.normalise_music(music), music)


def test_music_statistics_round_trip_and_apply(tmp_path, trained_like_model):
    from dataclasses import replace

    mean, std = _stats(trained_like_model.config.gpt.n_music)
    config = replace(trained_like_model.config, music_mean=mean, music_std=std)
    path = save_model(ckpt.DanceModel(config, trained_like_model.vqvae, trained_like_model.gpt), tmp_path / "m")
    raw = json.loads((path / "config.json").read_text())
    assert len(raw["music_mean"]) == len(raw["music_std"]) == config.gpt.n_music
    loaded = load_model(path)
    assert loaded.config == config
    assert loaded.config.music_mean == mean and loaded.config.music_std == std  # exact floats through JSON
    music = torch.randn(3, 4, config.gpt.n_music)  # (B, T, C)
    expected = (music - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(loaded.config.normalise_music(music), expected)


def test_invalid_music_statistics(trained_like_model):
    from dataclasses import replace

    cfg = trained_like_model.config
    n = cfg.gpt.n_music
    mean, std = _stats(n)
    with pytest.raises(CheckpointError, match="together"):
        replace(cfg, music_mean=mean)
    with pytest.raises(CheckpointError, match=f"{n} values"):
        replace(cfg, music_mean=mean[:-1], music_std=std[:-1])
    with pytest.raises(CheckpointError, match="positive"):
        replace(cfg, music_mean=mean, music_std=[0.0] * n)


def test_model_styles_round_trip_and_are_checked(tmp_path):
    import dataclasses

    base = debug_model_config()
    gpt = dataclasses.replace(base.gpt, n_styles=2)
    config = dataclasses.replace(base, gpt=gpt, styles=["salsa", "ballet"], style_starts={"salsa": (3, 4)},
                                 decoding={"greedy": False, "temperature": 1.0, "style_guidance": 2.0},
                                 style_decoding={"ballet": {"temperature": 1.3}})
    out = save_model(build_model(config), tmp_path / "styled")
    loaded = load_model(out).config
    assert loaded.styles == ["salsa", "ballet"] and loaded.style_starts == {"salsa": (3, 4)}
    assert loaded.style_decoding == {"ballet": {"temperature": 1.3}}
    assert loaded.decoding_for("ballet") == {"greedy": False, "temperature": 1.3, "style_guidance": 2.0}
    assert loaded.decoding_for("salsa") == loaded.decoding_for("any") == loaded.decoding
    assert [loaded.style_index(s) for s in ("any", "salsa", "ballet")] == [0, 1, 2]
    assert loaded.start_for("salsa") == (3, 4) and loaded.start_for("ballet") == loaded.default_start
    assert "styles" not in base.to_dict()  # a model without styles writes the config it always did
    for changes, message in [
        ({"styles": ["salsa"]}, "names 1 styles but its GPT has 2"),
        ({"styles": ["salsa", "salsa"]}, "distinct"),
        ({"styles": ["any", "salsa"]}, "distinct, non-empty and not 'any'"),
        ({"style_starts": {"tango": (0, 0)}}, "unknown style 'tango'"),
        ({"style_starts": {"salsa": (0, 999)}}, "outside the codebooks"),
        ({"style_decoding": {"tango": {"temperature": 1.2}}}, "style_decoding names an unknown style 'tango'"),
        ({"style_decoding": {"ballet": {"heat": 1.2}}}, "unknown keys ['heat']"),
        ({"style_decoding": {"ballet": {"temperature": -1.0}}}, "decoding for style 'ballet' is invalid"),
    ]:
        with pytest.raises(CheckpointError, match=re.escape(message)):
            dataclasses.replace(config, **changes)


def test_a_model_folder_may_carry_the_duets_follower(tmp_path):
    import dataclasses

    from engine.checkpoint import (
        FOLLOWER_FILE,
        build_model,
        debug_model_config,
        load_model,
        model_info,
        save_model,
    )
    from engine.errors import CheckpointError, MissingModelFileError
    from engine.models.follower import FollowerConfig

    torch.manual_seed(0)
    config = dataclasses.replace(debug_model_config(), follower=FollowerConfig.tiny())
    model = build_model(config)
    folder = save_model(model, tmp_path / "duo")
    loaded = load_model(folder)
    assert loaded.follower is not None and loaded.config.follower == config.follower
    for (name, a), (_, b) in zip(model.follower.state_dict().items(), loaded.follower.state_dict().items()):
        assert torch.equal(a, b), name
    assert model_info(folder)["stored_values"]["follower"] == sum(v.numel() for v in model.follower.state_dict().values())
    assert load_model(save_model(build_model(debug_model_config()), tmp_path / "solo")).follower is None
    (folder / FOLLOWER_FILE).unlink()
    with pytest.raises(MissingModelFileError, match=FOLLOWER_FILE):
        load_model(folder)
    with pytest.raises(CheckpointError, match="codebooks"):
        dataclasses.replace(debug_model_config(), follower=FollowerConfig.tiny(vocab_size_up=32))
