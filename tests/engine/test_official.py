"""Importing the official Bailando checkpoints: safety of the unpickler, full name mapping, parity."""

from __future__ import annotations

import os
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.checkpoint import load_model
from engine.errors import CheckpointError, ModelError, UnsafeCheckpointError, WeightsMismatchError
from engine.models.gpt import CrossCondGPT, GPTConfig
from engine.models.vqvae import SepVQVAE, VQVAEConfig
from engine.official import (
    ACTOR_CRITIC_CKPT,
    GPT_CKPT,
    VQVAE_CKPT,
    OfficialCheckpoint,
    gpt_config_from_official,
    gpt_from_official,
    import_official,
    load_official_checkpoint,
    vqvae_config_from_official,
    vqvae_from_official,
)
from tests.engine.golden import (
    OUR_EXTRA_BUFFERS,
    assert_float32_parity,
    assert_same_argmax,
    assert_vqvae_parity,
    load_tiny_official_gpt,
)


# --- official-like config dicts ----------------------------------------------------------------------------
def official_vqvae_structure(width=512, l_bins=512, emb_width=512, name="SepVQVAER") -> dict:
    half = {"levels": 1, "downs_t": [3], "strides_t": [2], "emb_width": emb_width, "l_bins": l_bins,
            "l_mu": 0.99, "commit": 0.02, "hvqvae_multipliers": [1], "width": width, "depth": 3,
            "m_conv": 1.0, "dilation_growth_rate": 3, "sample_length": 240, "use_bottleneck": True,
            "joint_channel": 3, "vqvae_reverse_decoder_dilation": True}
    return {"name": name, "up_half": dict(half), "down_half": dict(half), "use_bottleneck": True,
            "joint_channel": 3}


def official_gpt_structure(n_embd=768, n_head=12, n_layer=6, vocab=512, critic_layers=3) -> dict:
    drop = {"embd_pdrop": 0.1, "resid_pdrop": 0.1, "attn_pdrop": 0.1}
    common = {"block_size": 29, "n_head": n_head, "n_embd": n_embd}
    return {
        "name": "CrossCondGPT2AC", "block_size": 29, "n_music": 438, "n_music_emb": n_embd,
        "base": {**drop, **common, "vocab_size_up": vocab, "vocab_size_down": vocab, "n_layer": n_layer,
                 "n_music": 438, "n_music_emb": n_embd},
        "head": {**drop, **common, "vocab_size": vocab, "n_layer": n_layer, "vocab_size_up": vocab,
                 "vocab_size_down": vocab},
        "critic_net": {"embd_pdrop": 0.0, "resid_pdrop": 0.0, "attn_pdrop": 0.0, **common,
                       "n_layer": critic_layers, "vocab_size_up": 1, "vocab_size_down": 1},
    }


class FakeEasyDict(dict):
    """Pickles like easydict.EasyDict: items as dict items and again as attributes."""

    def __init__(self, d=None):
        super().__init__()
        for k, v in (d or {}).items():
            v = FakeEasyDict(v) if isinstance(v, dict) else v
            self[k] = v
            setattr(self, k, v)


def save_official_like(path: Path, state: dict[str, torch.Tensor], config: dict, epoch: int) -> Path:
    """torch.save a dict laid out like the release, with the config pickled as 'easydict.EasyDict'.

    The class is registered as easydict.EasyDict only while saving: the loader must not need it.
    """
    module = types.ModuleType("easydict")
    module.EasyDict = FakeEasyDict
    FakeEasyDict.__module__, FakeEasyDict.__qualname__ = "easydict", "EasyDict"
    sys.modules["easydict"] = module
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": {"module." + k: v for k, v in state.items()}, "config": FakeEasyDict(config),
                    "epoch": epoch}, path)
    finally:
        del sys.modules["easydict"]
        FakeEasyDict.__module__, FakeEasyDict.__qualname__ = __name__, "FakeEasyDict"
    return path


def official_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if not k.endswith(OUR_EXTRA_BUFFERS)}


@pytest.fixture(scope="module")
def tiny_experiments(tmp_path_factory) -> Path:
    """An 'experiments' folder of tiny official-like checkpoints built from random models of ours."""
    root = tmp_path_factory.mktemp("experiments")
    torch.manual_seed(0)
    vq = SepVQVAE(VQVAEConfig.tiny())
    for book in vq.codebooks:
        book.k.normal_()
    gpt = CrossCondGPT(GPTConfig.tiny(critic=True))
    config = {"structure_generate": official_gpt_structure(32, 2, 2, 64, 2)}
    save_official_like(root / VQVAE_CKPT, official_state(vq),
                       {"structure": official_vqvae_structure(32, 64, 32)}, 500)
    save_official_like(root / ACTOR_CRITIC_CKPT, gpt.state_dict(), config, 10)
    gpt_only = {k: v for k, v in gpt.state_dict().items() if not k.startswith("critic_net.")}
    save_official_like(root / GPT_CKPT, gpt_only, config, 400)
    return root


# --- the restricted unpickler ------------------------------------------------------------------------------
class RunsCode:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "epoch_500.pt"
    torch.save({"model": {"module.x": torch.zeros(2)}, "config": RunsCode(f"touch {marker}"), "epoch": 1},
               path)
    with pytest.raises(UnsafeCheckpointError, match=r"system"):
        load_official_checkpoint(path)
    assert not marker.exists()
    # and through the importer, which also writes nothing
    (tmp_path / "exp" / VQVAE_CKPT).parent.mkdir(parents=True)
    shutil.copy(path, tmp_path / "exp" / VQVAE_CKPT)
    save_official_like(tmp_path / "exp" / GPT_CKPT, {"gpt_base.pos_emb": torch.zeros(1)}, {}, 400)
    with pytest.raises(UnsafeCheckpointError):
        import_official(tmp_path / "exp", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_refused_global_is_never_imported(tmp_path):
    # A raw (non-zip) pickle naming a module whose import has a side effect: 'this' prints the Zen.
    assert "this" not in sys.modules
    path = tmp_path / "legacy.pt"
    path.write_bytes(b"\x80\x02cthis\ns\nq\x00.")
    with pytest.raises(UnsafeCheckpointError, match=r"this\.s"):
        load_official_checkpoint(path)
    assert "this" not in sys.modules


def test_truncated_or_garbage_file_is_a_checkpoint_error(tmp_path, tiny_experiments):
    data = (tiny_experiments / VQVAE_CKPT).read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as info:
        load_official_checkpoint(truncated)
    assert not isinstance(info.value, UnsafeCheckpointError)
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("<html>quota exceeded</html>")
    with pytest.raises(CheckpointError):
        load_official_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official_checkpoint(tmp_path / "missing.pt")


def test_config_becomes_plain_dicts_and_prefix_is_stripped(tiny_experiments):
    assert "easydict" not in sys.modules
    ckpt = load_official_checkpoint(tiny_experiments / VQVAE_CKPT)
    assert ckpt.epoch == 500
    assert all(not k.startswith("module.") for k in ckpt.state_dict)

    def all_plain(obj) -> bool:
        if isinstance(obj, dict):
            return type(obj) is dict and all(all_plain(v) for v in obj.values())
        return not isinstance(obj, FakeEasyDict)

    assert all_plain(ckpt.config)
    assert ckpt.config["structure"]["up_half"]["downs_t"] == [3]


# --- full-size name mapping ------------------------------------------------------------------------------
def parse_key_list(path: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    sections: dict[str, dict[str, tuple[int, ...]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].split(" ")[0]
            sections[current] = {}
        elif line and not line.startswith("#"):
            name, shape = line.split("\t")
            sections[current][name] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return sections


@pytest.fixture(scope="module")
def official_keys(golden_dir):
    return parse_key_list(golden_dir / "official_state_dict_keys.txt")


def lazy_zeros(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Full-size tensors that all view one float: names and shapes without 200+ MB of memory."""
    one = torch.zeros(1)
    return {name: one.expand(shape) for name, shape in shapes.items()}


def test_every_official_name_maps_at_full_size(tmp_path, official_keys):
    assert set(official_keys) == {"SepVQVAER", "CrossCondGPT2", "CrossCondGPT2AC"}
    files = {
        "SepVQVAER": save_official_like(tmp_path / "vq.pt", lazy_zeros(official_keys["SepVQVAER"]),
                                        {"structure": official_vqvae_structure()}, 500),
        "CrossCondGPT2": save_official_like(tmp_path / "gpt.pt", lazy_zeros(official_keys["CrossCondGPT2"]),
                                            {"structure_generate": official_gpt_structure()}, 400),
        "CrossCondGPT2AC": save_official_like(tmp_path / "ac.pt", lazy_zeros(official_keys["CrossCondGPT2AC"]),
                                              {"structure_generate": official_gpt_structure()}, 10),
    }
    assert os.path.getsize(files["CrossCondGPT2AC"]) < 1_000_000  # the storage really is shared
    for kind, path in files.items():
        ckpt = load_official_checkpoint(path)  # strips 'module.' from every key
        assert set(ckpt.state_dict) == set(official_keys[kind])
        model = vqvae_from_official(ckpt) if kind == "SepVQVAER" else gpt_from_official(ckpt)
        ours = {k: tuple(v.shape) for k, v in official_state(model).items()}
        assert ours == official_keys[kind], kind  # no name missing, none unexpected, every shape equal
        if kind != "SepVQVAER":
            assert (model.critic_net is not None) == (kind == "CrossCondGPT2AC")
            assert model.config.n_embd == 768 and model.config.n_layer_base == 6
            assert model.config.n_layer_critic == (3 if kind == "CrossCondGPT2AC" else 0)
        else:
            assert model.config == VQVAEConfig()


def test_missing_or_unexpected_official_name_is_named(official_keys):
    state = lazy_zeros(official_keys["SepVQVAER"])
    config = {"structure": official_vqvae_structure()}
    dropped = "vqvae_down.decoders_root.0.out.bias"
    with pytest.raises(WeightsMismatchError, match=re.escape(f"missing: {dropped}")):
        vqvae_from_official(OfficialCheckpoint({k: v for k, v in state.items() if k != dropped}, config, 500))
    extra = dict(state, **{"vqvae_up.encoders.0.level_blocks.0.model.9.weight": torch.zeros(1)})
    with pytest.raises(WeightsMismatchError, match=r"unexpected: vqvae_up\.encoders\.0\.level_blocks\.0\.model\.9"):
        vqvae_from_official(OfficialCheckpoint(extra, config, 500))
    small = {"structure": official_vqvae_structure(width=256)}
    with pytest.raises(WeightsMismatchError, match="wrong shape"):
        vqvae_from_official(OfficialCheckpoint(state, small, 500))
    gpt_state = lazy_zeros(official_keys["CrossCondGPT2"])
    with pytest.raises(CheckpointError, match="not the pose VQ-VAE"):
        vqvae_from_official(OfficialCheckpoint(gpt_state, {"structure_generate": {}}, 400))
    with pytest.raises(CheckpointError, match="not the motion GPT"):
        gpt_from_official(OfficialCheckpoint(state, config, 500))


# --- import_official -------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, message", [("l_bins", 10**9, "l_bins must be between"),
                                                   ("width", 10**5, "width must be between"),
                                                   ("dilation_cycle", "3", "dilation_cycle must be an integer")])
def test_absurd_official_vqvae_config_is_refused_before_allocating(field, value, message):
    structure = official_vqvae_structure()
    for half in ("up_half", "down_half"):
        structure[half][field] = value
    with pytest.raises(ModelError, match=message):
        vqvae_config_from_official(structure)


def test_official_gpt_config_our_model_refuses_is_a_checkpoint_error():
    """Sizes GPTConfig refuses (a ModelError) surface as a CheckpointError saying the model cannot be built."""
    assert gpt_config_from_official(official_gpt_structure(32, 2, 2, 64, 2), with_critic=True).n_head == 2
    for n_embd, n_head, reason in [(30, 4, "multiple of n_head"), (32, 0, "n_head must be between 1 and")]:
        with pytest.raises(CheckpointError, match=f"cannot be built: GPT config: .*{reason}"):
            gpt_config_from_official(official_gpt_structure(n_embd, n_head, 2, 64, 2), with_critic=True)
    structure = official_gpt_structure(32, 2, 2, 64, 2)
    structure["base"]["block_size"] = structure["block_size"] = 1
    with pytest.raises(CheckpointError, match="block_size must be between 2 and"):
        gpt_from_official(OfficialCheckpoint(
            {"gpt_base.pos_emb": torch.zeros(1, 3, 32)}, {"structure_generate": structure}, None))
    # the importer's own refusals keep their messages
    structure = official_gpt_structure(32, 2, 2, 64, 2)
    structure["base"]["n_music_emb"] = 16
    with pytest.raises(CheckpointError, match="^official GPT with n_music_emb != n_embd is not supported$"):
        gpt_config_from_official(structure, with_critic=True)


def test_import_writes_a_model_folder_and_is_lossless(tmp_path, tiny_experiments):
    out = import_official(tiny_experiments, tmp_path / "official")
    model = load_model(out)
    assert model.config.feature_mode == "official"
    assert model.config.default_start == (0, 0)  # (423, 12) does not exist in a 64-code book
    assert model.gpt.critic_net is not None  # the actor-critic file is preferred, its critic kept
    for file, module in ((VQVAE_CKPT, model.vqvae), (ACTOR_CRITIC_CKPT, model.gpt)):
        source = load_official_checkpoint(tiny_experiments / file).state_dict
        ours = official_state(module)
        assert ours.keys() == source.keys()
        assert all(torch.equal(ours[k], source[k]) for k in source)


def test_import_without_actor_critic_uses_the_plain_gpt(tmp_path, tiny_experiments):
    exp = tmp_path / "exp"
    for rel in (VQVAE_CKPT, GPT_CKPT):
        (exp / rel).parent.mkdir(parents=True)
        (exp / rel).symlink_to(tiny_experiments / rel)
    model = load_model(import_official(exp, tmp_path / "out"))
    assert model.gpt.critic_net is None and model.config.gpt.n_layer_critic == 0


def test_import_errors_write_nothing(tmp_path, tiny_experiments):
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="not a folder"):
        import_official(tmp_path / "nowhere", out)
    exp = tmp_path / "exp"
    exp.mkdir()
    with pytest.raises(CheckpointError, match=re.escape(str(VQVAE_CKPT))):
        import_official(exp, out)
    (exp / VQVAE_CKPT).parent.mkdir(parents=True)
    shutil.copy(tiny_experiments / VQVAE_CKPT, exp / VQVAE_CKPT)
    with pytest.raises(CheckpointError, match="no motion GPT found"):
        import_official(exp, out)
    # wrong kind: the GPT file where the VQ-VAE belongs (and the VQ-VAE where the GPT belongs)
    (exp / GPT_CKPT).parent.mkdir(parents=True)
    shutil.copy(tiny_experiments / GPT_CKPT, exp / VQVAE_CKPT)
    shutil.copy(tiny_experiments / GPT_CKPT, exp / GPT_CKPT)
    with pytest.raises(CheckpointError, match="holds a GPT checkpoint, not the pose VQ-VAE"):
        import_official(exp, out)
    shutil.copy(tiny_experiments / VQVAE_CKPT, exp / VQVAE_CKPT)
    shutil.copy(tiny_experiments / VQVAE_CKPT, exp / GPT_CKPT)
    with pytest.raises(CheckpointError, match="holds a VQ-VAE checkpoint, not the motion GPT"):
        import_official(exp, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


# --- parity with the official implementation (golden vectors) -------------------------------------------
@pytest.fixture(scope="module")
def imported_golden(golden_dir, tmp_path_factory):
    return load_model(import_official(golden_dir / "official_format", tmp_path_factory.mktemp("m") / "model"))


def window_outputs(gpt: CrossCondGPT, io) -> list[torch.Tensor]:
    args = [torch.from_numpy(io[k]) for k in ("window_up", "window_down", "window_music")]
    with torch.no_grad():
        return [*gpt(*args), *gpt.values(*args)]


def test_imported_official_format_matches_golden(imported_golden, golden_io):
    assert imported_golden.config.feature_mode == "official"
    assert_vqvae_parity(imported_golden.vqvae, golden_io)
    for ours, key in zip(window_outputs(imported_golden.gpt, golden_io),
                         ("window_logits_up", "window_logits_down", "window_value_up", "window_value_down")):
        assert_float32_parity(ours, golden_io[key], key)
        if "logits" in key:
            assert_same_argmax(ours, golden_io[key], key)


def test_npz_weights_match_golden_and_import_is_lossless(golden_dir, golden_io, imported_golden):
    """The same weights taken straight from tiny_official_weights.npz: identical results to the import."""
    weights = np.load(golden_dir / "tiny_official_weights.npz")
    config = __import__("json").loads((golden_dir / "tiny_official_config.json").read_text())
    vqvae_state = {k.split("/", 1)[1]: torch.from_numpy(weights[k]) for k in weights.files if k.startswith("vqvae/")}
    vqvae = vqvae_from_official(OfficialCheckpoint(vqvae_state, {"structure": config["vqvae_structure"]}, None)).eval()
    assert_vqvae_parity(vqvae, golden_io)
    # the other engineer's CrossCondGPT built directly at the tiny size, weights loaded as they are
    direct = load_tiny_official_gpt(golden_dir, critic=True)
    for a, b in zip(window_outputs(direct, golden_io), window_outputs(imported_golden.gpt, golden_io)):
        assert torch.equal(a, b)
    for a, b in zip(vqvae.state_dict().values(), imported_golden.vqvae.state_dict().values()):
        assert torch.equal(a, b)
