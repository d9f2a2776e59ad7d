"""Autoregressive decoding of dance codes from music with the cross-conditional GPT.

One new (up, down) code pair per music frame, as in the official sampler: ``music[k]`` is the music
paired with code k in the window, and the model's last output predicts code k + 1. (The official test
passes the 7.5 fps features from frame 1 on, so N feature frames give N tokens including the start.)

The context window at step k (predicting code k + 1 from codes ..k) follows the official rule:

* until 28 codes exist (``block_size - 1``) the window holds every code so far;
* ``shift=None``: then the last 28 codes, so the window slides by one each step;
* ``shift=s``: the window grows from s to 28 codes, then re-anchors on the last s codes
  (period 29 - s). Worked out against the golden tokens of the official code; see ``context_window``.

Ways to compute the same windows (``SamplingOptions.fast`` / ``draft``):

* exact: run the whole window every step, as the official code does;
* fast: keep each window's per-layer keys/values and feed only the new time step. This equals the
  full computation (up to float32 rounding) because a window that only grows keeps every earlier
  token's position and attention pattern (3 x 3-tiled causal mask). A small model recomputes a window
  when the context re-anchors (``KVCache``); a large one (``SLOT_WIDTH``) builds every window it will
  need a step at a time, side by side (``SlotCache``), so its windows ride on each step's weight read.
  A sliding window (``shift=None``) moves every position each step, so fast mode needs a shift: with
  ``shift=None`` it uses ``FAST_DEFAULT_SHIFT``.
* fast + ``draft``: an approximate copy proposes a window's tokens and the float32 model checks them
  in one pass; still the float32 model's greedy tokens (pays off when the draft usually agrees).

Approximate copies (``approximate_gpt``: bfloat16, int8) are faster and may change tokens.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import cache, lru_cache, partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .clock import TOKEN_FPS
from .errors import Cancelled, InvalidOptionError, ModelError
from .models.gpt import Block, CrossCondGPT, KVCache, SlotCache
from .threads import torch_threads

# Fast mode with shift=None uses this shift. 20 is the shift of the official sampler's golden vectors
# (so fast mode is checked token for token against the official code) and keeps at least 20 of the 28
# context codes (mean 24). A smaller shift buys almost nothing: one cached step reads every weight once
# (memory-bound, about 3/4 of a token's time), so the 20-step recomputation every 9 tokens is a small
# share; benchmarks/bench_gpt.py measured 90 ms/token at shift 20 and 95 at shift 12 (1 thread, busy box).
FAST_DEFAULT_SHIFT = 20

APPROXIMATIONS = ("bfloat16", "int8")

# The engine's default repeat limit (tokens at 7.5 per second): 2 s, the longest run of one code pair in
# the default model's training takes encoded by its VQ-VAE (99 % of runs are at most 3 tokens). Generated
# dances without a limit held one pair for up to 22 s (assets/MODEL_CARD.md).
DEFAULT_MAX_REPEAT = 15


def max_repeat_for(seconds: float) -> int | None:
    """The repeat limit (tokens) for a longest hold in seconds; 0 means no limit."""
    if not (np.isfinite(seconds) and seconds >= 0):
        raise InvalidOptionError(f"the longest hold must be 0 (no limit) or a positive number of seconds, got {seconds}")
    return max(1, int(round(seconds * TOKEN_FPS))) if seconds > 0 else None

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes 64-bit seeds


# What a model may recommend as its default decoding (ModelConfig.decoding): a small GPT trained on little
# data can collapse under argmax onto slow, low-energy codes, and a style may need guidance to show.
DECODING_KEYS = ("greedy", "temperature", "top_k", "style_guidance")


@dataclass
class SamplingOptions:
    # None below means "the model's default" (``resolved``; a model without one: the official greedy
    # decoding, temperature 1, guidance 1).
    greedy: bool | None = None  # argmax (the official decoding); False samples with temperature / top-k
    temperature: float | None = None  # > 0; only used when sampling
    top_k: int | None = None  # keep the k most likely codes (None = all); only when greedy is False
    seed: int | None = None  # seeds the sampling generator (None = a fresh random seed)
    shift: int | None = None  # official window rule: None = slide by one, s = grow from s to 28
    fast: bool = True  # key/value cache per window (official ``shift`` semantics, FAST_DEFAULT_SHIFT)
    # Greedy + fast only: an approximate copy ("int8" or "bfloat16", see approximate_gpt) proposes the
    # tokens of each window and the float32 model checks them all in one pass; the result is the
    # float32 model's tokens, only computed with fewer passes over its weights.
    draft: str | None = None
    # At most this many identical (up, down) pairs in a row (None = no limit, as the official decoder). A
    # greedy GPT can lock onto one pair and repeat its 8-frame snippet for many seconds (a dancer gliding
    # in place); past the limit the half whose best code costs the least probability to give up takes
    # its next choice instead (see ``_avoid_repeat``).
    max_repeat: int | None = DEFAULT_MAX_REPEAT
    # The GPT's style input (0 = any; 1.. = the model's styles, see ModelConfig.style_index), and how
    # strongly it steers: logits = any + guidance x (style - any), as classifier-free guidance (1: the
    # style's own logits; > 1 a more distinct style, at twice the GPT work per token).
    style: int = 0
    style_guidance: float | None = None

    def resolved(self, model_default: Mapping[str, object] | None = None) -> SamplingOptions:
        """These options with every "model's default" (None) filled in from ``model_default`` (a model's
        ``ModelConfig.decoding``), else the official decoding. A dance sampled because the *model* says
        so gets seed 0 unless a seed is given, so the default dance to a song is always the same."""
        d = dict(model_default or {})
        greedy = bool(d.get("greedy", True)) if self.greedy is None else self.greedy
        seed = self.seed
        if seed is None and self.greedy is None and not greedy:
            seed = 0
        return replace(
            self, greedy=greedy, seed=seed,
            temperature=float(d.get("temperature", 1.0)) if self.temperature is None else self.temperature,
            top_k=d.get("top_k") if self.top_k is None else self.top_k,  # type: ignore[arg-type]
            style_guidance=(float(d.get("style_guidance", 1.0)) if self.style_guidance is None  # type: ignore[arg-type]
                            else self.style_guidance),
        )

    def check(self) -> None:
        if self.greedy is not True and self.temperature is not None:
            if not (self.temperature > 0 and np.isfinite(self.temperature)):
                raise InvalidOptionError(f"temperature must be a positive number, got {self.temperature}")
            if self.top_k is not None and self.top_k < 1:
                raise InvalidOptionError(
                    f"top_k must be at least 1 (or None for all codes), got {self.top_k}"
                )
        if self.draft is not None and self.draft not in APPROXIMATIONS:
            raise InvalidOptionError(f"draft must be one of {APPROXIMATIONS} or None, got {self.draft!r}")
        if self.max_repeat is not None and self.max_repeat < 1:
            raise InvalidOptionError(
                f"max_repeat must be at least 1 (or None for no limit), got {self.max_repeat}"
            )
        if self.shift is not None and self.shift < 1:
            raise InvalidOptionError(
                f"shift must be at least 1 (or None for a sliding window), got {self.shift}"
            )
        if not (isinstance(self.style, int) and self.style >= 0):
            raise InvalidOptionError(f"style must be a style index of at least 0, got {self.style!r}")
        guidance = self.style_guidance
        if guidance is not None and not (np.isfinite(guidance) and 0 <= guidance <= 10):
            raise InvalidOptionError(f"style guidance must be within 0..10, got {guidance}")
        if self.draft is not None and guidance not in (None, 1.0):
            raise InvalidOptionError("a draft model cannot be combined with style guidance other than 1")
        if self.seed is not None and not 0 <= self.seed < SEED_LIMIT:
            raise InvalidOptionError(f"seed must be a whole number from 0 to 2^64 - 1, got {self.seed}")

    def effective_shift(self) -> int | None:
        """The shift actually used: fast mode needs one, so None becomes FAST_DEFAULT_SHIFT there."""
        if self.fast and self.shift is None:
            return FAST_DEFAULT_SHIFT
        return self.shift


def context_window(step: int, n_context: int, shift: int | None) -> tuple[int, int]:
    """(first code index, number of codes) of the window used at ``step`` to predict code step + 1.

    ``n_context`` is ``block_size - 1`` (28). With shift s (capped at n_context, as the official code
    does) the length cycles s, s + 1, .., n_context with period n_context - s + 1; the cycle is anchored
    so that step n_context (the first step with more codes than fit) has a full window.
    """
    if step < n_context:
        return 0, step + 1
    if shift is None:
        length = n_context
    else:
        s = min(shift, n_context)
        period = n_context - s + 1
        length = s + (step - n_context - 1) % period
    return step - length + 1, length


def _check_logits(logits: torch.Tensor) -> None:
    """Refuse NaN or infinite logits: argmax would silently pick code 0 and sampling would fail deep
    inside torch. They come from broken weights or music features out of any range the model saw."""
    if not bool(torch.isfinite(logits).all()):
        raise ModelError("the GPT produced NaN or infinite scores for the next move: the model's weights "
                         "are broken, or the music features are far outside what it was trained on")


def guide(any_logits: torch.Tensor, style_logits: torch.Tensor, guidance: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free style guidance: any + guidance x (style - any) (``guidance`` a number, or a tensor
    that broadcasts against the logits: one weight per row)."""
    return any_logits + guidance * (style_logits - any_logits)


def sampling_generator(options: SamplingOptions) -> torch.Generator | None:
    """The random generator a sampled decoding draws from (seeded, or freshly random without a seed);
    None for greedy decoding. It lives on the CPU whatever the model's device: a GPU's generator gives
    other numbers for the same seed, and a seed must mean the same dance on every machine."""
    if options.greedy:
        return None
    generator = torch.Generator()
    if options.seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(options.seed))
    return generator


def _pick(logits: torch.Tensor, options: SamplingOptions, generator: torch.Generator | None) -> torch.Tensor:
    """One code from logits (V,): argmax, or a draw at the given temperature among the top-k."""
    if options.greedy:
        return torch.argmax(logits)
    logits = logits.float() / float(options.temperature or 1.0)
    if options.top_k is not None and options.top_k < logits.shape[-1]:
        kth = torch.topk(logits, options.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1).cpu()  # the draw on the CPU's generator (see sampling_generator)
    return torch.multinomial(probs, 1, generator=generator)[0].to(logits.device)


def longest_repeat(codes_up: np.ndarray, codes_down: np.ndarray) -> int:
    """The longest run of one (up, down) pair in a dance's codes (N,) (0 for no codes)."""
    pairs = np.stack([np.asarray(codes_up), np.asarray(codes_down)], axis=1)
    if len(pairs) == 0:
        return 0
    change = np.flatnonzero(np.any(pairs[1:] != pairs[:-1], axis=1))
    return int(np.diff(np.concatenate([[-1], change, [len(pairs) - 1]])).max())


def _repeats_too_long(codes_up: torch.Tensor, codes_down: torch.Tensor, step: int, up: torch.Tensor,
                      down: torch.Tensor, max_repeat: int | None) -> bool:
    """Whether putting (up, down) at step + 1 would make more than ``max_repeat`` equal pairs in a row."""
    if max_repeat is None or step + 1 < max_repeat:
        return False
    first = step + 1 - max_repeat
    return bool((codes_up[first : step + 1] == up).all() and (codes_down[first : step + 1] == down).all())


def _avoid_repeat(logits_up: torch.Tensor, logits_down: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                  options: SamplingOptions, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair other than (up, down): the half where giving up the repeated code costs less log-probability
    (its best code minus its second best) picks again without that code; the other half keeps its code."""
    def without(logits: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(torch.arange(logits.shape[-1], device=logits.device) == code, float("-inf"))

    def cost(logits: torch.Tensor, code: torch.Tensor) -> float:
        # log-softmax shifts all of a head's logits by one amount: the log-probability gap is the logit gap
        return float(logits[code].float() - without(logits, code).max().float())

    if cost(logits_up, up) <= cost(logits_down, down):
        return _pick(without(logits_up, up), options, generator), down
    return up, _pick(without(logits_down, down), options, generator)


def _as_music(music: torch.Tensor | np.ndarray, gpt: CrossCondGPT, device: torch.device) -> torch.Tensor:
    music = torch.as_tensor(np.asarray(music) if not isinstance(music, torch.Tensor) else music)
    if music.ndim == 3 and music.shape[0] == 1:
        music = music[0]
    n_music = gpt.config.n_music
    if music.ndim != 2 or music.shape[1] != n_music:
        raise InvalidOptionError(
            f"music features must have shape (frames, {n_music}), got {tuple(music.shape)}; "
            "extract them with engine.audio.extract_features in the model's feature mode"
        )
    if not torch.isfinite(music).all():
        raise InvalidOptionError("music features contain NaN or infinite values")
    dtype = next(gpt.parameters()).dtype
    return music.to(device=device, dtype=dtype)


def _checked(gpt: CrossCondGPT, start_up: int, start_down: int, options: SamplingOptions | None) -> SamplingOptions:
    """The options resolved (defaults left open: the official decoding) and checked with the start codes."""
    options = (options or SamplingOptions()).resolved()
    options.check()
    config = gpt.config
    for name, code, vocab in (
        ("start_up", start_up, config.vocab_size_up),
        ("start_down", start_down, config.vocab_size_down),
    ):
        if not 0 <= int(code) < vocab:
            raise InvalidOptionError(f"{name} must be a code in 0..{vocab - 1}, got {code}")
    if options.style > config.n_styles:
        raise InvalidOptionError(f"style {options.style} is not one of this GPT's {config.n_styles} styles")
    return options


def sample_codes(
    gpt: CrossCondGPT,
    start_up: int,
    start_down: int,
    music: torch.Tensor | np.ndarray,
    options: SamplingOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one code pair per music frame after the start pair.

    music: (N, n_music) features, frame k paired with code k (see the module docstring).
    Returns (codes_up (N + 1,), codes_down (N + 1,)) int64, starting with the start codes.
    ``progress(done, N)`` is called after each token; ``cancel()`` is polled before each token and
    a true result raises ``Cancelled``. The model is put in eval mode.
    """
    options = _checked(gpt, start_up, start_down, options)
    if not (options.fast and options.greedy and options.draft is not None):
        return _sample_rows(gpt, [(start_up, start_down)], music, [options], progress, cancel)[0]
    # draft-checked greedy decoding (no style guidance: SamplingOptions.check refuses it with a draft)
    device = next(gpt.parameters()).device
    music = _as_music(music, gpt, device)  # (N, n_music)
    n_new = music.shape[0]
    # (1,) the style input of every call; None (no input at all) for "any", as the official model runs
    style = torch.tensor([options.style], device=device) if options.style else None
    codes_up = torch.empty(n_new + 1, dtype=torch.long, device=device)  # (N + 1,)
    codes_down = torch.empty(n_new + 1, dtype=torch.long, device=device)
    codes_up[0], codes_down[0] = int(start_up), int(start_down)
    gpt.eval()
    draft = approximate_gpt(gpt, options.draft)
    with torch.inference_mode():
        _speculative_greedy(gpt, draft, codes_up, codes_down, music, options.effective_shift(), progress, cancel,
                            options.max_repeat, style)
    return codes_up.cpu().numpy(), codes_down.cpu().numpy()


def can_batch(options_list: list[SamplingOptions]) -> bool:
    """Whether these dances' decodings can run as one batch: the cached (fast) mode without a draft,
    and one window rule for all (the rows advance through the same windows in lockstep)."""
    resolved = [(o or SamplingOptions()).resolved() for o in options_list]
    return (len(resolved) > 1 and all(o.fast and o.draft is None for o in resolved)
            and len({o.effective_shift() for o in resolved}) == 1)


# --- linear layers whose rows do not depend on the batch -------------------------------------------
# A matrix product's rounding depends on its shape: the BLAS picks its kernel (and splits the work
# between threads) by the number of rows, so one dance's rows came out 5e-6 apart when three cached-step
# rows were multiplied alone or among other dances' rows. During decoding every linear layer therefore
# multiplies at least 8 rows (padded with zeros; more are left as they are: a large model pays for every
# row beyond the 8 its weight read hides), alone or in a batch, and a batch shares one product only where
# this machine is checked to give every dance the bits of its own run. Through oneDNN (large models) the
# least is 6: on the 2-core AMD EPYC (Zen 4) the official-size GPT's packed products take 16.9 ms at 6
# rows, 18.3 at 3 and 22.9 at 8 (one thread; benchmarks/bench_cpu_floor.py). A large model's steps
# multiply 3 or 6 rows (one or two windows) while its first windows grow, in a song's last 19 tokens and
# throughout at a shift below 20: at shift 12, 31.5 -> 24 ms/token (benchmarks/bench_gpt.py, one thread).
ROWS_AT_LEAST = 8
ONEDNN_ROWS_AT_LEAST = 6


def _padded_rows(rows: int, onednn: bool = False) -> int:
    return max(ONEDNN_ROWS_AT_LEAST if onednn else ROWS_AT_LEAST, rows)


# From this model width on, the decoding products go through oneDNN's matrix multiply where torch has
# it: for a few rows against large weights it streams them faster than MKL's sgemm, which F.linear calls
# (official-size GPT, 12 blocks, one thread, 2-core AMD EPYC, medians of 8 passes in turns: 9 rows 39.0
# against 50.3 ms, 3 rows 29.9 against about 50 ms; benchmarks/bench_cpu_floor.py), and faster still
# from weights packed once per decoding into its blocked layout (``onednn_packed``: 9 rows 24-28 ms,
# 3 rows 20-24 ms; the same bits as the plain weights' product). Its rounding differs from MKL's (1e-7
# relative), as any two kernels' do. The 192-wide default model keeps F.linear: through oneDNN its demo
# song took 2.06 s against 1.62 s (medians of 4 in turns; the same tokens).
ONEDNN_WIDTH = 512
PACK_ROWS = 9  # the rows a cached step multiplies at shift 20 (three windows); oneDNN's layout hint (3..32 time alike)
# float32, and the bfloat16 approximation's weights (packed: 9 rows of the official size 14 ms, against
# 26 through F.linear in bfloat16)
ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  activation: str = "none") -> torch.Tensor:
    """F.linear's product through oneDNN (``torch.ops.mkldnn._linear_pointwise``), with ``activation``
    "gelu" followed by GELU (erf) in the same pass; only where ``onednn_available()``."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], "none" if activation == "gelu" else "")


@cache
def onednn_available() -> bool:
    """Whether this torch runs ``onednn_linear`` on this machine (and gets a product right)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    try:
        return bool(torch.equal(onednn_linear(torch.ones(2, 4), torch.ones(3, 4), torch.zeros(3)),
                                torch.full((2, 3), 4.0)))
    except (RuntimeError, NotImplementedError):
        return False


def onednn_packed(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (out, in) reordered into oneDNN's blocked layout for products of about ``PACK_ROWS``
    rows: ``onednn_linear`` reads it faster and gives the bits the plain weight gives. A copy (the
    model's own weights are left as they are); only where ``onednn_packing_available()``."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)


@cache
def onednn_packing_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether ``onednn_packed`` works here for weights of ``dtype`` and its products are the plain
    weight's, bit for bit (tried once on random numbers at row counts the decoding multiplies: at least
    6, ``_padded_rows``; a single row goes another way in oneDNN and differs by 1e-7)."""
    if not onednn_available():
        return False
    try:
        generator = torch.Generator().manual_seed(20261130)
        weight = torch.randn(96, 64, generator=generator).to(dtype)
        bias = torch.randn(96, generator=generator).to(dtype)
        packed = onednn_packed(weight)
        return all(torch.equal(onednn_linear(x, packed, bias), onednn_linear(x, weight, bias))
                   for x in (torch.randn(rows, 64, generator=generator).to(dtype) for rows in (6, 8, 9, 16, 27)))
    except (RuntimeError, NotImplementedError, AttributeError):
        return False


@cache
def onednn_fusion_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether, from packed weights, (1) one product with the query, key and value weights stacked gives
    the bits of the three products, and (2) the product with GELU as oneDNN's post-op gives the bits of
    F.gelu after the product (tried once on random numbers at the row counts the decoding multiplies).
    Where it holds, a decoding of a large model makes 2 products of a block's 6 (``_fuse_block``)."""
    if not onednn_packing_available(dtype):
        return False
    try:
        generator = torch.Generator().manual_seed(20261201)
        weights = [torch.randn(64, 64, generator=generator).to(dtype) for _ in range(3)]
        biases = [torch.randn(64, generator=generator).to(dtype) for _ in range(3)]
        stacked = onednn_packed(torch.cat(weights))
        packed = [onednn_packed(w) for w in weights]
        fc, fc_bias = torch.randn(256, 64, generator=generator).to(dtype), torch.randn(256, generator=generator).to(dtype)
        fc = onednn_packed(fc)
        for rows in (6, 8, 9, 12, 27):
            x = torch.randn(rows, 64, generator=generator).to(dtype)
            one = onednn_linear(x, stacked, torch.cat(biases))
            three = torch.cat([onednn_linear(x, w, b) for w, b in zip(packed, biases)], dim=1)
            if not (torch.equal(one, three) and torch.equal(onednn_linear(x, fc, fc_bias, "gelu"),
                                                             F.gelu(onednn_linear(x, fc, fc_bias)))):
                return False
        return True
    except (RuntimeError, NotImplementedError, AttributeError):
        return False


def _linear_padded(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   buffers: dict[tuple[int, int], torch.Tensor] | None = None, onednn: bool = False,
                   activation: str = "none") -> torch.Tensor:
    """F.linear (or with ``onednn`` oneDNN's linear) on rows x (m, C), computed over ``_padded_rows(m, onednn)``
    rows (zeros added, then dropped). ``buffers`` keeps the zero-padded inputs between calls (only their
    first m rows are ever written)."""
    rows, width = x.shape
    padded = _padded_rows(rows, onednn)
    if padded != rows:
        key = (padded, width)
        buffer = buffers.get(key) if buffers is not None else None
        if buffer is None or buffer.dtype != x.dtype or buffer.device != x.device:
            buffer = x.new_zeros(padded, width)
            if buffers is not None:
                buffers[key] = buffer
        buffer[:rows].copy_(x)
        x = buffer
    if onednn:
        return onednn_linear(x, weight, bias, activation)[:rows]
    out = F.linear(x, weight, bias)[:rows]
    return F.gelu(out) if activation == "gelu" else out


@cache
def _batch_keeps_rows(n_in: int, n_out: int, dtype: torch.dtype, device: str, group_rows: tuple[int, ...],
                      threads: int, alone_threads: int, onednn: bool = False, activation: str = "none") -> bool:
    """Whether one padded product over all ``group_rows`` on ``threads`` threads gives each group exactly
    the bits of its own padded product on ``alone_threads`` (a dance's own run), on this machine (tried
    once on random numbers: when the kernels or the threads' split of the work differ, their rounding
    differs somewhere in the rows; when they agree, for every input)."""
    generator = torch.Generator().manual_seed(20261129)
    weight = torch.randn(n_out, n_in, generator=generator).to(dtype=dtype, device=device)
    if onednn and onednn_packing_available(dtype):  # as _row_stable_linears multiplies
        weight = onednn_packed(weight)
    bias = torch.randn(n_out, generator=generator).to(dtype=dtype, device=device)
    x = torch.randn(sum(group_rows), n_in, generator=generator).to(dtype=dtype, device=device)
    with torch_threads(threads):
        whole = _linear_padded(x, weight, bias, onednn=onednn, activation=activation)
    with torch_threads(alone_threads):
        return all(torch.equal(_linear_padded(part, weight, bias, onednn=onednn, activation=activation), rows)
                   for part, rows in zip(x.split(group_rows), whole.split(group_rows)))


@contextmanager
def _row_stable_linears(gpt: nn.Module, groups: list[int], alone_threads: int) -> Iterator[None]:
    """While decoding: each linear layer of ``gpt`` multiplies padded rows (``_linear_padded``; a model of
    ``ONEDNN_WIDTH`` or more in float32 or bfloat16 on the CPU through oneDNN where torch has it, from
    packed weights where it can pack them); with
    several dances (``groups``: each dance's batch rows, two for a style-guided one) in one product on
    torch's current threads when ``_batch_keeps_rows`` says it gives each dance the bits of its own run
    (on ``alone_threads``), else once per dance on ``alone_threads``. The int8 layers of
    ``approximate_gpt`` quantise their input with one scale per product, so in a batch they always
    multiply each dance's rows alone. Through oneDNN, each block's query/key/value and its first MLP
    product with GELU are fused where that keeps the bits (``_fuse_block``)."""
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    buffers: dict[tuple[int, int], torch.Tensor] = {}  # padded inputs, shared by the layers (used one at a time)

    def group_rows(flat: torch.Tensor) -> tuple[int, ...]:
        per_row = flat.shape[0] // sum(groups)
        return tuple(g * per_row for g in groups)

    def alone(weight: torch.Tensor, bias: torch.Tensor | None, onednn: bool, x: torch.Tensor,
              activation: str = "none") -> torch.Tensor:
        out = _linear_padded(x.reshape(-1, x.shape[-1]), weight, bias, buffers, onednn, activation)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def batched(weight: torch.Tensor, bias: torch.Tensor | None, onednn: bool, x: torch.Tensor,
                activation: str = "none") -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        rows = group_rows(flat)
        if _batch_keeps_rows(weight.shape[1], weight.shape[0], flat.dtype, str(flat.device), rows,
                             torch.get_num_threads(), alone_threads, onednn, activation):
            out = _linear_padded(flat, weight, bias, buffers, onednn, activation)
        else:
            with torch_threads(alone_threads):
                out = torch.cat([_linear_padded(part, weight, bias, buffers, onednn, activation)
                                 for part in flat.split(rows)])
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def int8_per_dance(layer: Int8Linear, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        with torch_threads(alone_threads):
            out = torch.cat([Int8Linear.forward(layer, part) for part in flat.split(group_rows(flat))])
        return out.reshape(*x.shape[:-1], out.shape[-1])

    large = getattr(getattr(gpt, "config", None), "n_embd", 0) >= ONEDNN_WIDTH
    kind = alone if len(groups) == 1 else batched

    def through_onednn(layer: nn.Linear) -> bool:
        return (large and layer.weight.dtype in ONEDNN_DTYPES and layer.weight.device.type == "cpu"
                and onednn_available())

    # what a decoding runs: not the critic of an actor-critic checkpoint (the official one's 3 blocks would
    # be packed for nothing: 85 MB)
    parts = [gpt.gpt_base, gpt.gpt_head] if hasattr(gpt, "gpt_head") else [gpt]
    decoded = [m for part in parts for m in part.modules()]
    fused = [block for block in decoded if isinstance(block, Block) and isinstance(block.mlp[0], nn.Linear)
             and isinstance(block.attn.query, nn.Linear) and through_onednn(block.mlp[0])
             and block.attn.query.bias is not None and onednn_fusion_available(block.mlp[0].weight.dtype)]
    by_fused_qkv = {id(layer) for block in fused for layer in (block.attn.query, block.attn.key, block.attn.value)}
    patched: list[nn.Module] = []
    weights: dict[int, torch.Tensor] = {}  # id(layer) -> the weight its products read
    for layer in decoded:
        if isinstance(layer, nn.Linear) and id(layer) not in by_fused_qkv:
            onednn = through_onednn(layer)
            # packed for this decoding only (the official-size GPT: 340 MB more while it runs, 0.26 s to pack)
            packed = onednn and onednn_packing_available(layer.weight.dtype)
            weight = weights[id(layer)] = onednn_packed(layer.weight) if packed else layer.weight
            layer.forward = partial(kind, weight, layer.bias, onednn)  # type: ignore[method-assign]
            patched.append(layer)
        elif isinstance(layer, Int8Linear) and len(groups) > 1:
            layer.forward = partial(int8_per_dance, layer)  # type: ignore[method-assign]
            patched.append(layer)
    for block in fused:
        _fuse_block(block, kind, weights[id(block.mlp[0])])
        patched.append(block.mlp[1])
    try:
        yield
    finally:
        for layer in patched:
            del layer.forward  # back to the class's forward
        for block in fused:
            block.attn.fused_qkv = None


def _fuse_block(block: Block, kind: Callable[..., torch.Tensor], fc_weight: torch.Tensor) -> None:
    """Where ``onednn_fusion_available``: the block's query, key and value as one product of their
    stacked weights (packed; one pass over the input, one call), and GELU as the first MLP product's
    post-op (its GELU layer passes its input on). The same bits as the six products; measured on the
    official-size GPT, one thread, 2-core AMD EPYC, in turns: 38.9 -> 36.1 ms/token (medians of 5)."""
    attn, fc = block.attn, block.mlp[0]
    stacked = onednn_packed(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]))
    attn.fused_qkv = partial(kind, stacked, torch.cat([attn.query.bias, attn.key.bias, attn.value.bias]), True)
    fc.forward = partial(kind, fc_weight, fc.bias, True, activation="gelu")  # type: ignore[method-assign]
    block.mlp[1].forward = _identity  # type: ignore[method-assign]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class WindowSlots:
    """Where each context window of a fast decoding lives in a ``SlotCache``, built a step at a time.

    A window anchored at code a (see ``context_window``) is fed code c at step c for every c from a to
    its last step, so it is complete whenever a step uses it, and its slot is free again after that.
    ``slot_of[k]``: the slot whose window predicts code k + 1; ``fed[k]``: the (slot, time index) pairs
    fed code k, slots in order (a slot between windows is not fed).
    """

    n_slots: int
    slot_of: list[int]
    fed: list[list[tuple[int, int]]]


@lru_cache(maxsize=4)  # a schedule is a few lists per token: keep the last songs', not every song's
def window_slots(n_new: int, n_context: int, shift: int | None) -> WindowSlots:
    """The window schedule of ``n_new`` steps (each window given the first slot free from its anchor on)."""
    windows: dict[int, int] = {}  # anchor -> last step that uses it
    for step in range(n_new):
        windows[context_window(step, n_context, shift)[0]] = step
    free_from: list[int] = []  # per slot: the first step it is free
    slot_for: dict[int, int] = {}
    for anchor, last in windows.items():  # anchors in order
        slot = next((i for i, free in enumerate(free_from) if free <= anchor), len(free_from))
        if slot == len(free_from):
            free_from.append(0)
        free_from[slot] = last + 1
        slot_for[anchor] = slot
    fed: list[list[tuple[int, int]]] = [[] for _ in range(n_new)]
    for anchor, last in windows.items():
        for step in range(anchor, last + 1):
            fed[step].append((slot_for[anchor], step - anchor))
    slot_of = [slot_for[context_window(step, n_context, shift)[0]] for step in range(n_new)]
    return WindowSlots(max(1, len(free_from)), slot_of, [sorted(pairs) for pairs in fed])


def sample_codes_batch(
    gpt: CrossCondGPT,
    starts: list[tuple[int, int]],
    music: torch.Tensor | np.ndarray,
    options_list: list[SamplingOptions | None],
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    alone_threads: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Several dances to one music (each its start codes and sampling options: seed, temperature, style,
    ...) decoded in lockstep as one batch through the GPT on torch's current threads: the codes
    ``sample_codes`` gives each alone on ``alone_threads`` threads (default: the current count), token for
    token (see ``_row_stable_linears``). Decodings that cannot share a batch (see ``can_batch``) run one
    after another, each on ``alone_threads``."""
    if len(starts) != len(options_list):
        raise InvalidOptionError(f"{len(starts)} start code pairs for {len(options_list)} sets of options")
    resolved = [_checked(gpt, up, down, o) for (up, down), o in zip(starts, options_list)]
    alone_threads = alone_threads or torch.get_num_threads()
    if not can_batch(resolved):
        with torch_threads(alone_threads):
            return [sample_codes(gpt, up, down, music, o, progress, cancel)
                    for (up, down), o in zip(starts, resolved)]
    return _sample_rows(gpt, starts, music, resolved, progress, cancel, alone_threads)


# From this model width on, decoding builds every context window a step at a time in slots (SlotCache)
# instead of recomputing it when the context re-anchors. Measured on a 2-core AMD EPYC, one thread, the
# two ways in turns in one process: the official 768-wide GPT reads 340 MB of weights per cached step
# and the windows' 9 rows ride along (75-80 -> 57-63 ms per token, same tokens); the 192-wide default
# model's weights are read fast enough that the slots' extra rows and attention cost more than the
# recomputed windows (one dance +6 %, a batch of 4 +28 %).
SLOT_WIDTH = 512


def _sample_rows(
    gpt: CrossCondGPT,
    starts: list[tuple[int, int]],
    music: torch.Tensor | np.ndarray,
    resolved: list[SamplingOptions],
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    alone_threads: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The decoding of one or several dances (checked options, one window rule, all exact or all
    cached) as one batch: each step, the next codes of every dance from its current window's logits;
    each dance's logits those of its own run on ``alone_threads`` (default: torch's current count)."""
    device = next(gpt.parameters()).device
    music = _as_music(music, gpt, device)  # (N, n_music)
    n_new = music.shape[0]
    # Rows of the batch: one per dance, two for a style-guided one ("any", then the style).
    guided = [o.style > 0 and o.style_guidance != 1.0 for o in resolved]
    groups = [2 if g else 1 for g in guided]
    first_row = np.cumsum([0, *groups[:-1]]).tolist()
    styles = [s for o, g in zip(resolved, guided) for s in ((0, o.style) if g else (o.style,))]
    style = torch.tensor(styles, device=device) if any(styles) or gpt.config.n_styles else None
    rows = len(styles)
    generators = [sampling_generator(o) for o in resolved]

    codes_up = torch.empty(rows, n_new + 1, dtype=torch.long, device=device)  # (R, N + 1)
    codes_down = torch.empty(rows, n_new + 1, dtype=torch.long, device=device)
    for i, (up, down) in enumerate(starts):
        codes_up[first_row[i] : first_row[i] + groups[i], 0] = int(up)
        codes_down[first_row[i] : first_row[i] + groups[i], 0] = int(down)
    cached = resolved[0].fast
    windows = (_FullWindows if not cached else _SlotWindows if gpt.config.n_embd >= SLOT_WIDTH
               else _ReanchoredWindows)
    next_logits = windows(gpt, codes_up, codes_down, music, style, resolved[0].effective_shift())
    # cached decoding multiplies its rows as a batch of variations would; the exact mode as the official
    stable = _row_stable_linears(gpt, groups, alone_threads or torch.get_num_threads()) if cached else nullcontext()
    gpt.eval()
    with torch.inference_mode(), stable:
        for step in range(n_new):
            if cancel is not None and cancel():
                raise Cancelled(f"dance generation cancelled after {step} of {n_new} tokens")
            logits_up, logits_down = next_logits(step)  # (R, V): each row's logits for code step + 1
            for i, o in enumerate(resolved):
                r = first_row[i]
                if guided[i]:  # any + w (style - any), mixed on (1, V) slices
                    w = o.style_guidance
                    lu = guide(logits_up[r : r + 1], logits_up[r + 1 : r + 2], w)[0]
                    ld = guide(logits_down[r : r + 1], logits_down[r + 1 : r + 2], w)[0]
                else:
                    lu, ld = logits_up[r], logits_down[r]
                _check_logits(lu)
                _check_logits(ld)
                up = _pick(lu, o, generators[i])
                down = _pick(ld, o, generators[i])
                if _repeats_too_long(codes_up[r], codes_down[r], step, up, down, o.max_repeat):
                    up, down = _avoid_repeat(lu, ld, up, down, o, generators[i])
                codes_up[r : r + groups[i], step + 1] = up
                codes_down[r : r + groups[i], step + 1] = down
            if progress is not None:
                progress(step + 1, n_new)
    return [(codes_up[r].cpu().numpy(), codes_down[r].cpu().numpy()) for r in first_row]


class _FullWindows:
    """The exact mode: every step computes its whole window, as the official sampler does."""

    def __init__(self, gpt: CrossCondGPT, codes_up: torch.Tensor, codes_down: torch.Tensor, music: torch.Tensor,
                 style: torch.Tensor | None, shift: int | None) -> None:
        self.gpt, self.codes_up, self.codes_down, self.music, self.style = gpt, codes_up, codes_down, music, style
        self.n_context, self.shift = gpt.config.block_size - 1, shift

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = slice(context_window(step, self.n_context, self.shift)[0], step + 1)
        rows = self.codes_up.shape[0]
        logits_up, logits_down = self.gpt(self.codes_up[:, window], self.codes_down[:, window],
                                          self.music[None, window].expand(rows, -1, -1), style=self.style)
        return logits_up[:, -1], logits_down[:, -1]  # (R, V)


class _ReanchoredWindows(_FullWindows):
    """The current window's keys/values in a ``KVCache``: a step feeds the newest code, and when the
    context re-anchors the whole new window is computed at once (large, arithmetic-bound products)."""

    def __init__(self, gpt: CrossCondGPT, codes_up: torch.Tensor, codes_down: torch.Tensor, music: torch.Tensor,
                 style: torch.Tensor | None, shift: int | None) -> None:
        super().__init__(gpt, codes_up, codes_down, music, style, shift)
        self.cache: KVCache | None = None
        self.cache_start = -1

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        start, length = context_window(step, self.n_context, self.shift)
        if self.cache is None or start != self.cache_start or self.cache.length != length - 1:
            self.cache, self.cache_start = KVCache(), start  # (re-)anchor: run the whole new window
            new = slice(start, step + 1)
        else:
            new = slice(step, step + 1)  # the window grew by one step: feed only that step
        rows = self.codes_up.shape[0]
        logits_up, logits_down = self.gpt(self.codes_up[:, new], self.codes_down[:, new],
                                          self.music[None, new].expand(rows, -1, -1), cache=self.cache,
                                          style=self.style)  # (R, t, V)
        return logits_up[:, -1], logits_down[:, -1]


class _SlotWindows:
    """Every window a decoding will use, built a step at a time in its own slot of a ``SlotCache``
    (``window_slots``): each step feeds the newest code to every window that will need it, so no window
    is recomputed when the context re-anchors. The same arithmetic as ``_ReanchoredWindows``, done as
    extra rows of each step's pass over the weights: nearly free where reading them is the cost."""

    def __init__(self, gpt: CrossCondGPT, codes_up: torch.Tensor, codes_down: torch.Tensor, music: torch.Tensor,
                 style: torch.Tensor | None, shift: int | None) -> None:
        self.gpt, self.codes_up, self.codes_down, self.music, self.style = gpt, codes_up, codes_down, music, style
        self.schedule = window_slots(music.shape[0], gpt.config.block_size - 1, shift)
        self.cache = SlotCache(codes_up.shape[0], self.schedule.n_slots, gpt.config.block_size)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.codes_up.shape[0]
        fed = self.schedule.fed[step]  # [(slot, time index)], the same for every row
        self.cache.feed(torch.tensor([s for s, _ in fed]), torch.tensor([p for _, p in fed]))
        repeat = len(fed)
        style = None if self.style is None else self.style.repeat_interleave(repeat)
        all_up, all_down = self.gpt(self.codes_up[:, step].repeat_interleave(repeat)[:, None],
                                    self.codes_down[:, step].repeat_interleave(repeat)[:, None],
                                    self.music[None, step : step + 1].expand(rows * repeat, -1, -1),
                                    cache=self.cache, style=style)  # (R * A, 1, V), row by row
        current = [s for s, _ in fed].index(self.schedule.slot_of[step])  # each row's current window
        return all_up.view(rows, repeat, -1)[:, current], all_down.view(rows, repeat, -1)[:, current]


def _speculative_greedy(
    gpt: CrossCondGPT,
    draft: nn.Module,
    codes_up: torch.Tensor,
    codes_down: torch.Tensor,
    music: torch.Tensor,
    shift: int | None,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    max_repeat: int | None = None,
    style: torch.Tensor | None = None,
) -> None:
    """Greedy fast decoding where ``draft`` guesses and ``gpt`` checks; fills codes_* in place.

    Each window (a run of steps with the same first code) is decoded as: the draft proposes every
    remaining token of the window one by one (cheap), then ``gpt`` runs all proposed steps at once
    (one pass over its weights for many tokens); the leading proposals that equal ``gpt``'s argmax are
    kept, plus ``gpt``'s own token at the first disagreement, and both caches are rolled back to there.
    The repeat limit is applied to the kept tokens in order; a token it changes is the last one kept.
    """
    n_new = music.shape[0]
    n_context = gpt.config.block_size - 1
    draft_music = music.to(next(draft.parameters()).dtype)
    step = 0  # codes 0..step are final
    while step < n_new:
        start = context_window(step, n_context, shift)[0]
        end = step + 1  # this window serves steps step..end-1
        while end < n_new and context_window(end, n_context, shift)[0] == start:
            end += 1
        target_cache, draft_cache = KVCache(), KVCache()  # both hold window times start..start+length-1
        while step < end:
            if cancel is not None and cancel():
                raise Cancelled(f"dance generation cancelled after {step} of {n_new} tokens")
            # draft: propose codes step+1..end, feeding times not yet in its cache
            for t in range(step, end):
                new = slice(start + draft_cache.length, t + 1)
                logits_up, logits_down = draft(
                    codes_up[None, new], codes_down[None, new], draft_music[None, new], cache=draft_cache,
                    style=style,
                )
                codes_up[t + 1] = torch.argmax(logits_up[0, -1])
                codes_down[t + 1] = torch.argmax(logits_down[0, -1])
            # check: the float32 model's argmax at every proposed step, in one pass
            fed = start + target_cache.length
            new = slice(fed, end)
            logits_up, logits_down = gpt(
                codes_up[None, new], codes_down[None, new], music[None, new], cache=target_cache, style=style
            )
            _check_logits(logits_up[0, step - fed :])
            _check_logits(logits_down[0, step - fed :])
            best_up = torch.argmax(logits_up[0, step - fed :], dim=-1)  # codes step+1..end
            best_down = torch.argmax(logits_down[0, step - fed :], dim=-1)
            agree = (best_up == codes_up[step + 1 : end + 1]) & (best_down == codes_down[step + 1 : end + 1])
            n_kept = min(int(agree.int().cumprod(0).sum()) + 1, end - step)  # agreeing run + one correction
            codes_up[step + 1 : step + 1 + n_kept] = best_up[:n_kept]
            codes_down[step + 1 : step + 1 + n_kept] = best_down[:n_kept]
            for i in range(n_kept):  # the repeat limit, in order: a changed code ends the kept run
                t, row = step + i, step - fed + i
                if _repeats_too_long(codes_up, codes_down, t, codes_up[t + 1], codes_down[t + 1], max_repeat):
                    codes_up[t + 1], codes_down[t + 1] = _avoid_repeat(
                        logits_up[0, row], logits_down[0, row], codes_up[t + 1].clone(),
                        codes_down[t + 1].clone(), SamplingOptions(greedy=True), None)
                    n_kept = i + 1
                    break
            step += n_kept
            # times < step now hold final codes in both caches; later ones were fed guesses
            target_cache.truncate(step - start)
            draft_cache.truncate(step - start)
            if progress is not None:
                for done in range(step - n_kept + 1, step + 1):
                    progress(done, n_new)


def approximate_gpt(gpt: CrossCondGPT, kind: str) -> nn.Module:
    """A faster, *approximate* copy of the GPT for decoding; the original model is left untouched.

    ``"bfloat16"``: weights and activations in bfloat16 (half the memory traffic).
    ``"int8"``: every Linear dynamically quantised to int8 weights (a quarter of the memory traffic,
    torch.ao's dynamic quantisation, which PyTorch marks deprecated but 2.13 still ships).
    Tokens can differ from the float32 model wherever two codes are nearly tied, and one changed token
    changes the rest of the dance; benchmarks/bench_gpt.py reports the share that still match.
    """
    if kind == "bfloat16":
        return copy.deepcopy(gpt).to(torch.bfloat16).eval()
    if kind == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation notice of quantised tensors
            return quantize_dynamic(copy.deepcopy(gpt).eval(), {nn.Linear}, dtype=torch.qint8)
    raise InvalidOptionError(f"unknown approximation {kind!r}; choose one of {APPROXIMATIONS}")
