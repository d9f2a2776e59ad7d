"""sample_codes against the official sampler's golden tokens, plus sampling options and control."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import Cancelled, InvalidOptionError, ModelError
from engine.models.gpt import CrossCondGPT, GPTConfig
from engine.sampling import (
    FAST_DEFAULT_SHIFT,
    SamplingOptions,
    approximate_gpt,
    can_batch,
    context_window,
    longest_repeat,
    sample_codes,
    sample_codes_batch,
    window_slots,
)
from tests.engine.golden import load_tiny_official_gpt

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gpt(golden_dir: Path):
    return load_tiny_official_gpt(golden_dir, critic=False)


def _sample(gpt, golden_io, options: SamplingOptions, **kwargs):
    return sample_codes(
        gpt,
        int(golden_io["start_up"][0]),
        int(golden_io["start_down"][0]),
        golden_io["music_cond"][0],
        options,
        **kwargs,
    )


def test_context_window_rule() -> None:
    # growing window from the start, then the last 28 codes
    assert [context_window(k, 28, None) for k in (0, 5, 27, 28, 60)] == [
        (0, 1),
        (0, 6),
        (0, 28),
        (1, 28),
        (33, 28),
    ]
    # shift 20: full at step 28, then 20, 21, .., 28 (period 9) and again
    lengths = [context_window(k, 28, 20)[1] for k in range(28, 48)]
    assert lengths == [28] + list(range(20, 29)) + list(range(20, 29)) + [20]
    for k in range(28, 80):  # the window always ends at the newest code
        start, length = context_window(k, 28, 20)
        assert start + length == k + 1
    # a shift of 28 or more is the sliding window
    assert all(context_window(k, 28, 40) == context_window(k, 28, None) for k in range(80))


def test_golden_tokens_differ_between_shifts(golden_io) -> None:
    differ = (golden_io["sample_shift_none_up"] != golden_io["sample_shift_20_up"]).sum() + (
        golden_io["sample_shift_none_down"] != golden_io["sample_shift_20_down"]
    ).sum()
    assert differ > 0  # so the tests below can tell the two window rules apart


@pytest.mark.parametrize(
    "options, golden_name",
    [
        # the official decoder has no repeat limit
        (SamplingOptions(shift=None, fast=False, max_repeat=None), "sample_shift_none"),
        (SamplingOptions(shift=20, fast=False, max_repeat=None), "sample_shift_20"),
        (SamplingOptions(shift=20, fast=True, max_repeat=None), "sample_shift_20"),
        (SamplingOptions(max_repeat=None), f"sample_shift_{FAST_DEFAULT_SHIFT}"),  # fast by default, default shift
        (SamplingOptions(shift=20, draft="int8", max_repeat=None), "sample_shift_20"),  # int8 guesses, float32 decides
    ],
    ids=["exact-none", "exact-20", "fast-20", "defaults", "fast-20-int8-draft"],
)
def test_greedy_tokens_equal_official(gpt, golden_io, options: SamplingOptions, golden_name: str) -> None:
    codes_up, codes_down = _sample(gpt, golden_io, options)
    assert codes_up.dtype == np.int64 and codes_up.shape == (81,)
    np.testing.assert_array_equal(codes_up, golden_io[f"{golden_name}_up"][0])
    np.testing.assert_array_equal(codes_down, golden_io[f"{golden_name}_down"][0])


@pytest.mark.parametrize("shift", [20, 1, 12, 28, None])
def test_window_slots_hold_each_window_whole_when_it_is_used(shift) -> None:
    """Each step's window is in its slot with every code from its anchor on, fed in order at the right
    time index, and no other window used that slot in between."""
    n_new = 120
    schedule = window_slots(n_new, 28, shift)
    assert schedule.n_slots <= 29
    for step in range(n_new):
        start, length = context_window(step, 28, shift)
        slot = schedule.slot_of[step]
        fed_to_slot = [dict(schedule.fed[c]).get(slot) for c in range(start, step + 1)]
        assert fed_to_slot == list(range(length))
        assert len({s for s, _ in schedule.fed[step]}) == len(schedule.fed[step])  # a slot fed once a step
    if shift == 20:  # a code lives in 3 windows, 1 step in 9 in 4 (re-anchored every 9 steps, 28 long)
        assert schedule.n_slots == 4
        assert [len(schedule.fed[k]) for k in range(60, 69)].count(4) == 1
        assert all(3 <= len(schedule.fed[k]) <= 4 for k in range(28, n_new - 28))


@pytest.mark.parametrize(
    "options, golden_name",
    [(SamplingOptions(shift=20, max_repeat=None), "sample_shift_20"),
     (SamplingOptions(max_repeat=None), f"sample_shift_{FAST_DEFAULT_SHIFT}")],
)
def test_slot_decoding_gives_the_official_tokens(gpt, golden_io, monkeypatch, options, golden_name) -> None:
    """The slot decoding (what a model of SLOT_WIDTH or more uses; here forced on the tiny one) gives the
    official greedy tokens, and draws the exact mode's tokens from a seed."""
    from engine import sampling

    monkeypatch.setattr(sampling, "SLOT_WIDTH", 0)
    codes_up, codes_down = _sample(gpt, golden_io, options)
    np.testing.assert_array_equal(codes_up, golden_io[f"{golden_name}_up"][0])
    np.testing.assert_array_equal(codes_down, golden_io[f"{golden_name}_down"][0])
    sampled = SamplingOptions(greedy=False, top_k=8, seed=123, shift=20)
    exact = _sample(gpt, golden_io, replace(sampled, fast=False))
    np.testing.assert_array_equal(_sample(gpt, golden_io, sampled)[0], exact[0])


def test_seeded_sampling_is_reproducible(gpt, golden_io) -> None:
    options = SamplingOptions(greedy=False, temperature=1.0, top_k=8, seed=123, shift=20)
    first = _sample(gpt, golden_io, options)
    second = _sample(gpt, golden_io, options)
    other = _sample(gpt, golden_io, SamplingOptions(greedy=False, temperature=1.0, top_k=8, seed=124, shift=20))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert (first[0] != other[0]).sum() > 10
    greedy = golden_io["sample_shift_20_up"][0]
    assert (first[0] != greedy).sum() > 10  # temperature 1 really samples
    # the cached and the full computation draw the same tokens from the same seed
    exact = _sample(gpt, golden_io, SamplingOptions(greedy=False, top_k=8, seed=123, shift=20, fast=False))
    np.testing.assert_array_equal(first[0], exact[0])


def test_low_temperature_and_top1_approach_greedy(gpt, golden_io) -> None:
    for options in (
        SamplingOptions(greedy=False, temperature=1e-4, seed=0, shift=20, max_repeat=None),
        SamplingOptions(greedy=False, temperature=2.0, top_k=1, seed=0, shift=20, max_repeat=None),
    ):
        codes_up, codes_down = _sample(gpt, golden_io, options)
        np.testing.assert_array_equal(codes_up, golden_io["sample_shift_20_up"][0])
        np.testing.assert_array_equal(codes_down, golden_io["sample_shift_20_down"][0])


def test_progress_and_cancel(gpt, golden_io) -> None:
    calls: list[tuple[int, int]] = []
    _sample(gpt, golden_io, SamplingOptions(), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 80) for k in range(1, 81)]

    polled = []

    def cancel_after_ten() -> bool:
        polled.append(1)
        return len(polled) > 10

    with pytest.raises(Cancelled, match="10 of 80"):
        _sample(gpt, golden_io, SamplingOptions(), cancel=cancel_after_ten)


@pytest.mark.parametrize(
    "options, start, music_shape, message",
    [
        (SamplingOptions(greedy=False, temperature=0.0), (5, 7), (10, 438), "temperature"),
        (SamplingOptions(greedy=False, top_k=0), (5, 7), (10, 438), "top_k"),
        (SamplingOptions(shift=0), (5, 7), (10, 438), "shift"),
        (SamplingOptions(draft="float8"), (5, 7), (10, 438), "draft"),
        (SamplingOptions(max_repeat=0), (5, 7), (10, 438), "max_repeat"),
        (SamplingOptions(), (64, 7), (10, 438), "start_up"),
        (SamplingOptions(), (5, -1), (10, 438), "start_down"),
        (SamplingOptions(), (5, 7), (10, 52), "shape"),
    ],
)
def test_bad_options_are_refused(gpt, options, start, music_shape, message) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        sample_codes(gpt, start[0], start[1], np.zeros(music_shape, np.float32), options)


def test_no_music_gives_only_the_start_codes(gpt) -> None:
    codes_up, codes_down = sample_codes(gpt, 3, 4, np.zeros((0, 438), np.float32))
    assert codes_up.tolist() == [3] and codes_down.tolist() == [4]


def test_approximate_copies_stay_close_and_leave_the_model_alone(gpt, golden_io) -> None:
    inputs = [torch.from_numpy(golden_io[k]) for k in ("window_up", "window_down", "window_music")]
    before = {name: tensor.clone() for name, tensor in gpt.state_dict().items()}
    with torch.inference_mode():
        reference = gpt(*inputs)[0]  # (2, 29, 64)
        for kind, min_agreement in (("bfloat16", 0.95), ("int8", 0.7)):
            approx = approximate_gpt(gpt, kind)
            dtype = torch.bfloat16 if kind == "bfloat16" else torch.float32
            logits = approx(inputs[0], inputs[1], inputs[2].to(dtype))[0].float()
            agreement = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
            assert agreement >= min_agreement, kind
            assert np.corrcoef(logits.flatten(), reference.flatten())[0, 1] > 0.98, kind
            codes_up, _ = sample_codes(approx, 5, 7, golden_io["music_cond"][0], SamplingOptions(shift=20))
            assert codes_up.shape == (81,) and codes_up[0] == 5
    after = gpt.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    with pytest.raises(InvalidOptionError, match="float8"):
        approximate_gpt(gpt, "float8")


@pytest.mark.parametrize("draft", ["int8", "bfloat16"])
def test_draft_checked_decoding_equals_plain_fast_decoding(gpt, golden_io, draft: str) -> None:
    """The draft only proposes; the float32 model's greedy tokens come out, for any shift."""
    for shift in (12, 27):
        plain = _sample(gpt, golden_io, SamplingOptions(shift=shift))
        calls: list[int] = []
        record = calls.append
        checked = _sample(
            gpt,
            golden_io,
            SamplingOptions(shift=shift, draft=draft),
            progress=lambda done, total, record=record: record(done),
        )
        np.testing.assert_array_equal(checked[0], plain[0])
        np.testing.assert_array_equal(checked[1], plain[1])
        assert calls == list(range(1, 81))
    # the int8 draft really disagrees with the float32 model on this music, so rejections are exercised
    approx = _sample(approximate_gpt(gpt, "int8"), golden_io, SamplingOptions(shift=20, max_repeat=None))
    assert (approx[0] != golden_io["sample_shift_20_up"][0]).any()


@pytest.fixture(scope="module")
def stuck_gpt(gpt):
    """The tiny GPT with ln_f flattened to a constant: every step has the same logits, so greedy decoding
    repeats one pair forever (the failure the repeat limit exists for)."""
    stuck = copy.deepcopy(gpt)
    ln_f = stuck.gpt_head.ln_f
    with torch.no_grad():
        ln_f.weight.zero_()
        ln_f.bias.copy_(torch.linspace(-1.0, 1.0, ln_f.bias.numel()))
    return stuck


@pytest.mark.parametrize("fast, draft", [(False, None), (True, None), (True, "int8")])
def test_non_finite_logits_are_refused_not_decoded_as_code_0(gpt, golden_io, fast, draft) -> None:
    broken = copy.deepcopy(gpt)
    with torch.no_grad():
        broken.gpt_head.head_down.weight[7, 3] = float("nan")
    with pytest.raises(ModelError, match="NaN or infinite scores"):
        sample_codes(broken, 5, 7, golden_io["music_cond"][0], SamplingOptions(fast=fast, draft=draft))


def test_repeat_limit_breaks_a_stuck_pair(stuck_gpt, golden_io) -> None:
    music = golden_io["music_cond"][0]
    free_up, free_down = sample_codes(stuck_gpt, 5, 7, music, SamplingOptions(max_repeat=None))
    assert longest_repeat(free_up, free_down) == 80  # stuck from the first generated token on
    best_up, best_down = int(free_up[1]), int(free_down[1])

    head = stuck_gpt.gpt_head
    with torch.no_grad():
        x = head.ln_f(torch.zeros(1, head.ln_f.bias.numel()))[0]
        logp_up = torch.log_softmax(head.head_up(x), -1)
        logp_down = torch.log_softmax(head.head_down(x), -1)
    # the half that loses the least log-probability by giving up its best code takes its second best
    gap_up = float(logp_up[best_up] - logp_up.topk(2).values[1])
    gap_down = float(logp_down[best_down] - logp_down.topk(2).values[1])
    second = ((int(logp_up.topk(2).indices[1]), best_down) if gap_up <= gap_down
              else (best_up, int(logp_down.topk(2).indices[1])))

    results = {}
    for name, options in {
        "exact": SamplingOptions(max_repeat=4, fast=False, shift=20),
        "fast": SamplingOptions(max_repeat=4, shift=20),
        "draft": SamplingOptions(max_repeat=4, shift=20, draft="int8"),
    }.items():
        up, down = sample_codes(stuck_gpt, 5, 7, music, options)
        results[name] = (up, down)
        assert longest_repeat(up, down) == 4, name
        pairs = list(zip(up.tolist(), down.tolist()))
        # four of the best pair, then the runner-up once, and again: the model's choices, only rationed
        assert pairs[1:11] == [(best_up, best_down)] * 4 + [second] + [(best_up, best_down)] * 4 + [second], name
    for name in ("fast", "draft"):  # the same tokens whichever way they are computed
        np.testing.assert_array_equal(results[name][0], results["exact"][0])
        np.testing.assert_array_equal(results[name][1], results["exact"][1])


def test_longest_repeat_counts_runs_of_whole_pairs() -> None:
    assert longest_repeat(np.array([1, 1, 1, 2, 2]), np.array([3, 3, 4, 4, 4])) == 2  # (1,3)x2, (2,4)x2
    assert longest_repeat(np.array([5, 5, 5]), np.array([0, 0, 0])) == 3
    assert longest_repeat(np.array([7]), np.array([1])) == 1
    assert longest_repeat(np.zeros(0, int), np.zeros(0, int)) == 0


def test_repeat_limit_applies_when_sampling(stuck_gpt, golden_io) -> None:
    options = SamplingOptions(greedy=False, temperature=0.05, seed=3, max_repeat=3)
    up, down = sample_codes(stuck_gpt, 5, 7, golden_io["music_cond"][0], options)
    assert longest_repeat(up, down) <= 3


def test_open_choices_take_the_models_default_decoding() -> None:
    official = SamplingOptions().resolved()
    assert (official.greedy, official.temperature, official.style_guidance, official.seed) == (True, 1.0, 1.0, None)
    ours = {"greedy": False, "temperature": 0.9, "style_guidance": 2.5}
    model_default = SamplingOptions().resolved(ours)
    assert (model_default.greedy, model_default.temperature, model_default.style_guidance) == (False, 0.9, 2.5)
    assert model_default.seed == 0  # sampled because the model says so: the same dance every time
    assert SamplingOptions(seed=5).resolved(ours).seed == 5
    assert SamplingOptions(greedy=True).resolved(ours).greedy is True  # the user's choice wins
    user = SamplingOptions(greedy=False, temperature=0.5).resolved(ours)
    assert (user.temperature, user.seed) == (0.5, None)  # asked to sample without a seed: a fresh one
    assert SamplingOptions(style_guidance=1.0).resolved(ours).style_guidance == 1.0
    with pytest.raises(InvalidOptionError, match="style guidance"):
        SamplingOptions(style_guidance=-1.0).check()
    with pytest.raises(InvalidOptionError, match="draft model cannot be combined with style guidance"):
        SamplingOptions(draft="int8", style_guidance=2.0).check()


def test_style_guidance_mixes_the_style_with_any(golden_io) -> None:
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig.tiny(n_styles=2)).eval()
    with torch.no_grad():
        gpt.gpt_base.style_emb.weight.normal_(std=2.0)
    music = golden_io["music_cond"][0][:40]

    def dance(style: int, guidance: float, fast: bool = True) -> np.ndarray:
        up, down = sample_codes(copy.deepcopy(gpt), 5, 7, music,
                                SamplingOptions(greedy=True, style=style, style_guidance=guidance, fast=fast,
                                                shift=20))
        return np.stack([up, down])

    np.testing.assert_array_equal(dance(1, 0.0), dance(0, 1.0))  # guidance 0: the "any" logits
    plain, guided = dance(1, 1.0), dance(1, 3.0)
    assert not np.array_equal(plain, guided) and not np.array_equal(guided, dance(0, 1.0))
    np.testing.assert_array_equal(dance(1, 3.0, fast=False), guided)  # exact and cached decoding agree
    with pytest.raises(InvalidOptionError, match="not one of this GPT's 2 styles"):
        dance(3, 1.0)


@pytest.mark.parametrize("shared_products, slots, onednn",
                         [(True, False, False), (False, False, False), (True, True, False), (True, True, True)])
def test_a_batch_of_variations_decodes_each_as_it_would_alone(golden_io, monkeypatch, shared_products, slots,
                                                              onednn) -> None:
    """Seeds, temperatures, top-k, greedy, start codes, styles with and without guidance, and the repeat
    limit, mixed in one batch: every dance's tokens are those of its own run. Also where the machine's
    matrix products would not keep a dance's rows apart (then each dance's rows are multiplied alone),
    and as a large model decodes (slots; oneDNN from packed weights where torch has it)."""
    from engine import sampling

    if not shared_products:
        monkeypatch.setattr(sampling, "_batch_keeps_rows", lambda *args: False)
    if slots:  # the windows in slots, as for a model of SLOT_WIDTH or more
        monkeypatch.setattr(sampling, "SLOT_WIDTH", 0)
    if onednn:
        if not sampling.onednn_packing_available():
            pytest.skip("this torch cannot pack weights for oneDNN")
        monkeypatch.setattr(sampling, "ONEDNN_WIDTH", 0)
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig.tiny(n_styles=2)).eval()
    with torch.no_grad():
        gpt.gpt_base.style_emb.weight.normal_(std=2.0)
    music = golden_io["music_cond"][0][:60]
    variations = [
        ((5, 7), SamplingOptions(greedy=False, seed=0)),
        ((5, 7), SamplingOptions(greedy=False, seed=1, temperature=0.6, top_k=5)),
        ((1, 2), SamplingOptions(greedy=True, style=2, style_guidance=3.0)),
        ((3, 4), SamplingOptions(greedy=False, seed=7, style=1)),
        ((5, 7), SamplingOptions(greedy=True, max_repeat=2)),
    ]
    alone = [sample_codes(gpt, up, down, music, o) for (up, down), o in variations]
    steps = []
    batch = sample_codes_batch(gpt, [s for s, _ in variations], music, [o for _, o in variations],
                               progress=lambda done, total: steps.append((done, total)))
    for (up, down), (b_up, b_down) in zip(alone, batch):
        np.testing.assert_array_equal(b_up, up)
        np.testing.assert_array_equal(b_down, down)
    assert len({tuple(u) for u, _ in batch}) == len(variations)  # they are different dances
    assert steps[-1] == (60, 60) and len(steps) == 60  # one progress call per token for the whole batch
    assert not any("forward" in m.__dict__ for m in gpt.modules())  # the linear layers are themselves again
    with pytest.raises(Cancelled):
        sample_codes_batch(gpt, [(5, 7), (1, 2)], music, [None, None], cancel=lambda: True)


@pytest.mark.parametrize("shared_products", [True, False])
def test_a_batch_on_two_threads_gives_each_dance_the_logits_of_its_one_thread_run(golden_io, monkeypatch,
                                                                                    shared_products) -> None:
    """The thread policy decodes variations of a small model on two threads (``threads.BATCH_THREADS``);
    each dance must still see, bit for bit, the logits of its own run on one thread. A model as wide as
    the default one (192), so that the context windows' products and GELU inputs are large enough for
    torch to share them between the threads."""
    from engine import sampling
    from engine.threads import torch_threads

    if not shared_products:
        monkeypatch.setattr(sampling, "_batch_keeps_rows", lambda *args: False)
    seen: list[torch.Tensor] = []
    check = sampling._check_logits
    monkeypatch.setattr(sampling, "_check_logits", lambda logits: (seen.append(logits.clone()), check(logits)))
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig(vocab_size_up=64, vocab_size_down=64, n_embd=192, n_head=6, n_layer_base=1,
                                 n_layer_head=1, n_styles=2)).eval()
    music = torch.as_tensor(golden_io["music_cond"][0][:40])
    variations = [SamplingOptions(greedy=False, seed=seed, style=style, style_guidance=2.5)
                  for seed, style in [(0, 0), (1, 2), (2, 0), (3, 1)]]
    alone = []
    for o in variations:
        seen.clear()
        codes = sample_codes(gpt, 5, 7, music, o)
        alone.append((codes, torch.stack(seen)))
    seen.clear()
    with torch_threads(2):
        batch = sample_codes_batch(gpt, [(5, 7)] * 4, music, variations, alone_threads=1)
    assert torch.get_num_threads() == 1
    in_batch = torch.stack(seen).view(len(music), len(variations), 2, -1)  # (step, dance, up/down, V)
    for i, ((codes, logits), batch_codes) in enumerate(zip(alone, batch)):
        assert torch.equal(in_batch[:, i].reshape(-1, in_batch.shape[-1]), logits)
        np.testing.assert_array_equal(batch_codes[0], codes[0])
        np.testing.assert_array_equal(batch_codes[1], codes[1])


def test_a_large_models_cached_products_go_through_onednn_and_keep_the_exact_tokens(golden_io, monkeypatch) -> None:
    """From SLOT_WIDTH on, the cached decoding multiplies through oneDNN (faster for a few rows against
    large weights), from copies of the weights packed into its layout; its rounding differs from MKL's by
    about 1e-7, which must not change a token of a model whose logits are not near ties (a trained one:
    here the read-out scaled up)."""
    from engine import sampling

    if not sampling.onednn_available():
        pytest.skip("this torch has no oneDNN linear")
    kernels = []  # (oneDNN?, weight in oneDNN's packed layout?) of every product
    real = sampling._linear_padded
    monkeypatch.setattr(sampling, "_linear_padded",
                        lambda *args, **kwargs: (kernels.append((args[4] if len(args) > 4 else kwargs.get("onednn"),
                                                                 args[1].is_mkldnn)),
                                                 real(*args, **kwargs))[1])
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig(vocab_size_up=64, vocab_size_down=64, n_embd=512, n_head=8, n_layer_base=1,
                                 n_layer_head=1)).eval()
    with torch.no_grad():
        for head in (gpt.gpt_head.head_up, gpt.gpt_head.head_down):
            head.weight.mul_(30.0)
    music = golden_io["music_cond"][0][:45]
    exact = sample_codes(gpt, 1, 2, music, SamplingOptions(greedy=True, fast=False, shift=20, max_repeat=None))
    assert kernels == []  # the exact mode is the official computation: F.linear
    cached = sample_codes(gpt, 1, 2, music, SamplingOptions(greedy=True, shift=20, max_repeat=None))
    packed = sampling.onednn_packing_available()
    assert kernels and all(onednn and is_packed == packed for onednn, is_packed in kernels)
    assert not any(m.weight.is_mkldnn for m in gpt.modules() if isinstance(m, torch.nn.Linear))  # a copy was packed
    np.testing.assert_array_equal(cached[0], exact[0])
    np.testing.assert_array_equal(cached[1], exact[1])
    assert len(set(cached[0].tolist())) > 5  # a dance, not one code held


def test_a_large_models_products_multiply_six_rows_where_a_step_has_fewer(golden_io, monkeypatch) -> None:
    """Through oneDNN a step's 3 or 6 rows (one or two windows: while the first windows grow, at a song's
    end) are multiplied as 6, not padded to 8 as for MKL: on a Zen 4 EPYC the official size's packed
    products take 16.9 ms at 6 rows and 22.9 at 8. Three windows' 9 rows and four's 12 stay as they are."""
    from engine import sampling

    if not sampling.onednn_available():
        pytest.skip("this torch has no oneDNN linear")
    # the start-up checks multiply rows of their own: run them first, called as the decoding calls them
    # (functools.cache keys on the arguments as given, so a call without the dtype would not count)
    sampling.onednn_fusion_available(torch.float32)
    rows = []
    real = sampling.onednn_linear
    monkeypatch.setattr(sampling, "onednn_linear", lambda x, *args: (rows.append(x.shape[0]), real(x, *args))[1])
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig(vocab_size_up=64, vocab_size_down=64, n_embd=512, n_head=8, n_layer_base=1,
                                 n_layer_head=1)).eval()
    music = golden_io["music_cond"][0][:45]
    sample_codes(gpt, 1, 2, music, SamplingOptions(greedy=True, shift=20, max_repeat=None))
    assert set(rows) == {6, 9, 12}


def test_a_large_models_decoding_fuses_a_blocks_products_with_the_same_bits(golden_io, monkeypatch) -> None:
    """From ONEDNN_WIDTH on, a cached decoding makes each block's query, key and value one product of
    their stacked weights and applies GELU as the first MLP product's post-op: every step's logits keep
    the bits of the six separate products (so the tokens of a dance do not depend on it), for one dance
    and for a batch; afterwards the model is itself again."""
    from engine import sampling

    if not sampling.onednn_fusion_available():
        pytest.skip("this torch cannot fuse oneDNN products")
    products = []  # (output width, activation) of every product
    real = sampling._linear_padded
    monkeypatch.setattr(sampling, "_linear_padded", lambda x, weight, bias, *args, **kwargs: (
        products.append((weight.shape[0], args[2] if len(args) > 2 else kwargs.get("activation", "none"))),
        real(x, weight, bias, *args, **kwargs))[1])
    seen: list[torch.Tensor] = []
    check = sampling._check_logits
    monkeypatch.setattr(sampling, "_check_logits", lambda logits: (seen.append(logits.clone()), check(logits)))
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig(vocab_size_up=64, vocab_size_down=64, n_embd=512, n_head=8, n_layer_base=1,
                                 n_layer_head=1)).eval()
    with torch.no_grad():
        for p in gpt.parameters():
            if p.dim() == 1:
                p.normal_(std=0.1)  # biases and layer norms away from their zeros and ones
    music = golden_io["music_cond"][0][:40]
    options = [SamplingOptions(greedy=False, seed=seed, shift=20) for seed in range(2)]

    def decode() -> tuple[list, list[torch.Tensor]]:
        seen.clear()
        codes = [sample_codes(gpt, 1, 2, music, options[0]),
                 *sample_codes_batch(gpt, [(1, 2)] * 2, music, options)]
        return codes, list(seen)

    fused_codes, fused_logits = decode()
    assert (3 * 512, "none") in products and (4 * 512, "gelu") in products
    assert (512, "none") in products and (4 * 512, "none") not in products  # no separate GELU input
    assert all(m.fused_qkv is None for m in gpt.modules() if hasattr(m, "fused_qkv"))
    assert not any("forward" in m.__dict__ for m in gpt.modules())
    products.clear()
    monkeypatch.setattr(sampling, "onednn_fusion_available", lambda dtype=torch.float32: False)
    plain_codes, plain_logits = decode()
    assert (3 * 512, "none") not in products and (4 * 512, "none") in products
    assert len(fused_logits) == len(plain_logits) > 0
    assert all(torch.equal(a, b) for a, b in zip(fused_logits, plain_logits))
    for (up, down), (plain_up, plain_down) in zip(fused_codes, plain_codes):
        np.testing.assert_array_equal(up, plain_up)
        np.testing.assert_array_equal(down, plain_down)


def test_a_decoding_leaves_the_critic_of_an_actor_critic_model_as_it_is(golden_io, monkeypatch) -> None:
    """The critic of an actor-critic checkpoint is not run while decoding: its layers are not patched or
    packed (the official one's 3 blocks would be 85 MB of packed weights), the decoded layers are."""
    from engine import sampling

    monkeypatch.setattr(sampling, "ONEDNN_WIDTH", 0)
    torch.manual_seed(0)
    gpt = CrossCondGPT(GPTConfig.tiny(critic=True)).eval()
    patched: list[tuple[bool, bool]] = []  # (a decoded layer patched?, a critic layer patched?) per step

    def look(done: int, total: int) -> None:
        head, critic = gpt.gpt_head, gpt.critic_net
        patched.append((all("forward" in m.__dict__ for m in (head.head_up, head.head_down, head.blocks[0].mlp[0])),
                        any("forward" in m.__dict__ for m in critic.modules())
                        or any(b.attn.fused_qkv is not None for b in critic.blocks)))

    sample_codes(gpt, 1, 2, golden_io["music_cond"][0][:12], SamplingOptions(shift=20), progress=look)
    assert patched and all(head and not critic for head, critic in patched)


@pytest.mark.parametrize("kind, width", [("int8", 64), ("int8", 512), ("bfloat16", 512)])
def test_a_batch_of_approximate_variations_decodes_each_as_it_would_alone(golden_io, kind, width) -> None:
    """The int8 approximation quantises each product's input with one scale, so a dance's rows must not
    share a product with other dances' (they did: 2 of 3 dances of a 512-wide model came out different).
    The bfloat16 one of a large model multiplies through oneDNN from packed bfloat16 weights."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size_up=64, vocab_size_down=64, n_embd=width, n_head=8, n_layer_base=1, n_layer_head=1)
    gpt = approximate_gpt(CrossCondGPT(config).eval(), kind)
    music = golden_io["music_cond"][0][:50]
    options = [SamplingOptions(greedy=False, seed=seed) for seed in range(3)]
    batch = sample_codes_batch(gpt, [(1, 2)] * 3, music, options)
    for o, (b_up, b_down) in zip(options, batch):
        up, down = sample_codes(gpt, 1, 2, music, o)
        np.testing.assert_array_equal(b_up, up)
        np.testing.assert_array_equal(b_down, down)
    assert not any("forward" in m.__dict__ for m in gpt.modules())  # every layer is itself again


def test_variations_that_cannot_share_windows_run_one_after_another(gpt, golden_io) -> None:
    options = [SamplingOptions(fast=False), SamplingOptions(shift=10)]
    assert not can_batch(options)
    start = (int(golden_io["start_up"][0]), int(golden_io["start_down"][0]))
    batch = sample_codes_batch(gpt, [start, start], golden_io["music_cond"][0], options)
    for (up, down), o in zip(batch, options):
        alone = _sample(gpt, golden_io, o)
        np.testing.assert_array_equal(up, alone[0])
        np.testing.assert_array_equal(down, alone[1])
