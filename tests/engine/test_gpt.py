"""CrossCondGPT against the official implementation: names, golden window outputs, cache, loss."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.models.gpt import CrossCondGPT, GPTConfig, KVCache, SlotCache
from tests.engine.golden import assert_float32_parity, assert_same_argmax, load_tiny_official_gpt

# The same window computed in pieces of another size rounds differently in float32; with the random
# tiny weights (logits up to 8.5) that reaches 4e-5, as large as float32 vs float64 of one window (6e-5).
ROUNDING = 2e-4


def official_names(golden_dir: Path, model: str) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer names and shapes of one section of official_state_dict_keys.txt."""
    names: dict[str, tuple[int, ...]] = {}
    inside = False
    for line in (golden_dir / "official_state_dict_keys.txt").read_text().splitlines():
        if line.startswith("## "):
            inside = line.startswith(f"## {model} ")
        elif inside and "\t" in line:
            name, shape = line.split("\t")
            names[name] = tuple(int(n) for n in re.findall(r"\d+", shape))
    return names


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("official, critic", [("CrossCondGPT2", False), ("CrossCondGPT2AC", True)])
def test_full_size_names_and_shapes_equal_official(golden_dir: Path, official: str, critic: bool) -> None:
    expected = official_names(golden_dir, official)
    assert len(expected) > 200
    with torch.device("meta"):  # full size without allocating 87-108 M parameters
        model = CrossCondGPT(GPTConfig.official(critic=critic))
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert ours == expected


@pytest.mark.parametrize("critic", [False, True])
def test_tiny_official_weights_load_strict(golden_dir: Path, critic: bool) -> None:
    model = load_tiny_official_gpt(golden_dir, critic)
    assert (model.critic_net is not None) == critic


def test_window_logits_and_values_match_official(golden_dir: Path, golden_io) -> None:
    model = load_tiny_official_gpt(golden_dir, critic=True)
    inputs = [torch.from_numpy(golden_io[k]) for k in ("window_up", "window_down", "window_music")]
    with torch.inference_mode():
        logits_up, logits_down = model(*inputs)
        value_up, value_down = model.values(*inputs)
    assert logits_up.shape == (2, 29, 64) and value_down.shape == (2, 29, 1)
    for ours, name in [
        (logits_up, "window_logits_up"),
        (logits_down, "window_logits_down"),
        (value_up, "window_value_up"),
        (value_down, "window_value_down"),
    ]:
        assert_float32_parity(ours, golden_io[name], name)
    assert_same_argmax(logits_up, golden_io["window_logits_up"], "up")
    assert_same_argmax(logits_down, golden_io["window_logits_down"], "down")


def test_short_window_uses_each_streams_own_positions(golden_dir: Path, golden_io) -> None:
    """A window shorter than 29 must equal the first steps of a longer one (causality + segment positions)."""
    model = load_tiny_official_gpt(golden_dir, critic=False)
    up, down, music = (
        torch.from_numpy(golden_io[k][:1]) for k in ("window_up", "window_down", "window_music")
    )
    with torch.inference_mode():
        full_up, full_down = model(up, down, music)
        short_up, short_down = model(up[:, :11], down[:, :11], music[:, :11])
    torch.testing.assert_close(short_up, full_up[:, :11], rtol=0, atol=ROUNDING)
    torch.testing.assert_close(short_down, full_down[:, :11], rtol=0, atol=ROUNDING)


def test_cached_decoding_equals_full_computation(golden_dir: Path, golden_io) -> None:
    model = load_tiny_official_gpt(golden_dir, critic=False)
    up, down, music = (
        torch.from_numpy(golden_io[k][1:]) for k in ("window_up", "window_down", "window_music")
    )
    with torch.inference_mode():
        full_up, full_down = model(up, down, music)  # (1, 29, 64)
        cache = KVCache()
        got_up, got_down = [], []
        # a prefill of 7 steps, one step of 5, then single steps up to the full window
        for a, b in [(0, 7), (7, 12)] + [(i, i + 1) for i in range(12, 29)]:
            lu, ld = model(up[:, a:b], down[:, a:b], music[:, a:b], cache=cache)
            got_up.append(lu)
            got_down.append(ld)
            assert cache.length == b
        torch.testing.assert_close(torch.cat(got_up, 1), full_up, rtol=0, atol=ROUNDING)
        torch.testing.assert_close(torch.cat(got_down, 1), full_down, rtol=0, atol=ROUNDING)

        # rolling back and feeding the same steps again gives the same logits
        cache.truncate(20)
        again_up, _ = model(up[:, 20:23], down[:, 20:23], music[:, 20:23], cache=cache)
        torch.testing.assert_close(again_up, full_up[:, 20:23], rtol=0, atol=ROUNDING)

        with pytest.raises(ValueError, match="block_size"):
            model(up[:, :7], down[:, :7], music[:, :7], cache=cache)  # 23 + 7 > 29


def test_slot_cache_decodes_several_windows_at_their_own_positions(golden_dir: Path, golden_io) -> None:
    """Four slots, fed one step per call (not every slot every time), each its own stretch of the golden
    window from its own time index (one starts over mid-way): every step's logits equal the full
    computation of that slot's window up to that step; stale keys of an earlier window are never seen."""
    model = load_tiny_official_gpt(golden_dir, critic=False)
    up, down, music = (
        torch.from_numpy(golden_io[k][1:]) for k in ("window_up", "window_down", "window_music")
    )
    windows = {0: [(0, 19)], 1: [(3, 19)], 2: [(9, 14), (15, 19)], 3: [(4, 9), (14, 19)]}  # (first, last)
    cache = SlotCache(1, 4, model.block_size)
    with torch.inference_mode():
        for step in range(20):
            starts = {s: a for s, spans in windows.items() for a, last in spans if a <= step <= last}
            fed = sorted(starts)  # slot 3 is idle at steps 10..13, between its two windows
            cache.feed(torch.tensor(fed), torch.tensor([step - starts[s] for s in fed]))
            n = len(fed)
            lu, ld = model(up[:, step].expand(n)[:, None], down[:, step].expand(n)[:, None],
                           music[:, step].expand(n, -1)[:, None], cache=cache)
            assert lu.shape == (n, 1, 64)
            for row, s in enumerate(fed):
                a = starts[s]
                full_up, full_down = model(up[:, a : step + 1], down[:, a : step + 1], music[:, a : step + 1])
                torch.testing.assert_close(lu[row, -1], full_up[0, -1], rtol=0, atol=ROUNDING)
                torch.testing.assert_close(ld[row, -1], full_down[0, -1], rtol=0, atol=ROUNDING)
        with pytest.raises(ValueError, match="one new step per slot"):
            cache.feed(torch.tensor([0, 1]), torch.tensor([0, 29]))
        cache.feed(torch.tensor([0, 1]), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="one new step per fed slot"):
            model(up[:, :3].T, down[:, :3].T, music[0, :3, None], cache=cache)


def test_loss_is_cross_entropy_of_both_streams_and_trains() -> None:
    torch.manual_seed(0)
    model = CrossCondGPT(GPTConfig.tiny(embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))
    codes_up = torch.randint(0, 64, (3, 13))
    codes_down = torch.randint(0, 64, (3, 13))
    music = torch.randn(3, 12, 438)
    args = (codes_up[:, :-1], codes_down[:, :-1], music, codes_up[:, 1:], codes_down[:, 1:])
    loss = model.loss(*args)
    # untrained logits are near uniform, so each stream's CE is close to log(64)
    assert abs(loss.item() - 2 * np.log(64)) < 0.1
    per_token = model.loss(*args, reduction="none")  # (B, t), for advantage-weighted actor updates
    assert per_token.shape == (3, 12)
    torch.testing.assert_close(per_token.mean(), loss)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        optimiser.zero_grad()
        model.loss(*args).backward()
        optimiser.step()
    assert model.loss(*args).item() < 0.5 * loss.item()


def test_dropout_only_in_training_mode() -> None:
    model = CrossCondGPT(GPTConfig.tiny())
    inputs = (torch.randint(0, 64, (1, 5)), torch.randint(0, 64, (1, 5)), torch.randn(1, 5, 438))
    model.train()
    assert not torch.equal(model(*inputs)[0], model(*inputs)[0])
    model.eval()
    assert torch.equal(model(*inputs)[0], model(*inputs)[0])


def test_values_need_a_critic() -> None:
    model = CrossCondGPT(GPTConfig.tiny())
    with pytest.raises(ModelError, match="critic"):
        model.values(
            torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 438)
        )


def test_bad_config_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="n_head"):
        GPTConfig(n_embd=32, n_head=3)
    with pytest.raises(ModelError, match="n_head must be between 1 and"):
        GPTConfig(n_embd=32, n_head=0)


@pytest.mark.parametrize("field, value, message", [
    ("n_embd", "64", "n_embd must be an integer, got '64'"),
    ("n_layer_base", 4.5, "n_layer_base must be an integer, got 4.5"),
    ("n_head", True, "n_head must be an integer"),
    ("attn_pdrop", float("nan"), "attn_pdrop must be a finite number"),
    ("vocab_size_up", 10**12, "vocab_size_up must be between"),
    ("n_layer_head", 512, "billion parameters"),  # each field in range, the whole far too large
])
def test_config_of_wrong_type_or_absurd_size_is_refused_before_allocating(field, value, message) -> None:
    with pytest.raises(ModelError, match=re.escape(message)):
        GPTConfig.tiny(**{field: value, **({"n_embd": 8192, "n_head": 8} if field == "n_layer_head" else {})})


def test_parameter_count_is_exact() -> None:
    for config in (GPTConfig.tiny(), GPTConfig.tiny(critic=True), GPTConfig.official(critic=True),
                   GPTConfig.tiny(n_styles=4)):
        with torch.device("meta"):
            model = CrossCondGPT(config)
        assert config.parameter_count() == sum(p.numel() for p in model.parameters())


def test_style_input_is_one_learned_vector_per_window() -> None:
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig.tiny(n_styles=3)).eval()
    assert gpt.gpt_base.style_emb.weight.shape == (4, 32)  # row 0 is "any"
    with torch.no_grad():
        gpt.gpt_base.style_emb.weight.normal_(std=1.0)
    up, down = torch.randint(64, (2, 6)), torch.randint(64, (2, 6))
    music = torch.randn(2, 6, 438)
    with torch.no_grad():
        any_style = gpt(up, down, music)
        zeros = gpt(up, down, music, style=torch.zeros(2, dtype=torch.long))
        styled = gpt(up, down, music, style=torch.tensor([1, 3]))
        # the cached path takes the style the same way: the window fed in two pieces gives the same logits
        cache = KVCache()
        first = gpt(up[:, :4], down[:, :4], music[:, :4], cache=cache, style=torch.tensor([1, 3]))
        rest = gpt(up[:, 4:], down[:, 4:], music[:, 4:], cache=cache, style=torch.tensor([1, 3]))
    torch.testing.assert_close(any_style, zeros, rtol=0, atol=0)  # no style given = "any"
    assert not torch.allclose(styled[0], any_style[0], atol=1e-3)
    for a, b, c in zip(first, rest, styled):
        torch.testing.assert_close(torch.cat([a, b], dim=1), c, rtol=0, atol=ROUNDING)


def test_a_gpt_without_styles_refuses_a_style_and_keeps_the_official_layout() -> None:
    gpt = CrossCondGPT(GPTConfig.tiny())
    assert gpt.gpt_base.style_emb is None and not any("style" in k for k in gpt.state_dict())
    up, down, music = torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 438)
    gpt(up, down, music, style=torch.zeros(1, dtype=torch.long))  # "any" is every model's
    with pytest.raises(ModelError, match="no style input"):
        gpt(up, down, music, style=torch.ones(1, dtype=torch.long))
