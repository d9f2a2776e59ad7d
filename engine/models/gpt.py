"""Cross-conditional motion GPT (Bailando's "choreographic memory" reader), with an optional critic.

One sequence per window of t time steps holds three streams side by side:

    [ music_0 .. music_{t-1} | up_0 .. up_{t-1} | down_0 .. down_{t-1} ]      (3t tokens)

Every stream has its own 29-slot segment of the learned positional embedding, and the causal mask is a
lower-triangular (t, t) block tiled 3 x 3: a token at time i sees every stream at times <= i, including
the other two streams at the same time i. The music frame paired with input code i is the music of the
token being predicted (code i+1); the caller aligns that (see engine.sampling).

    gpt_base : embeddings + n_layer_base pre-LN blocks (no final LayerNorm)
    gpt_head : n_layer_head blocks + ln_f + head_up / head_down (no bias) -> logits per stream
    critic_net (actor-critic only): the same kind of head with one output per stream;
               the state value is V = value_up + value_down.

Parameter and buffer names equal the official checkpoints' names (``gpt_base.blocks.0.attn.key.weight``,
``gpt_head.head_up.weight``, ``critic_net.ln_f.bias``, ...), so official weights load with strict=True.

Fast decoding: ``forward(..., cache=KVCache)`` appends new time steps to a window whose keys/values are
cached per layer; the result equals a full recomputation of the whole window (see ``KVCache``).
``forward(..., cache=SlotCache)`` feeds one new time step to each of several windows at once, each in
its own slot at its own position (see ``SlotCache``); the result equals each window computed alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .config_fields import check_config_fields, check_parameter_count

# What a config may hold (inclusive); the official size is well inside every range.
_GPT_RANGES: dict[str, tuple[float, float]] = {
    "vocab_size_up": (1, 65536), "vocab_size_down": (1, 65536), "block_size": (2, 4096), "n_music": (1, 8192),
    "n_embd": (1, 16384), "n_head": (1, 1024), "n_layer_base": (1, 512), "n_layer_head": (1, 512),
    "n_layer_critic": (0, 512), "embd_pdrop": (0, 1), "resid_pdrop": (0, 1), "attn_pdrop": (0, 1),
    "n_styles": (0, 1024), "style_pdrop": (0, 1),
}


@dataclass
class GPTConfig:
    vocab_size_up: int = 512  # upper-body codebook size
    vocab_size_down: int = 512  # lower-body codebook size
    block_size: int = 29  # time steps per window (29 slots of positional embedding per stream)
    n_music: int = 438  # music feature size per frame
    n_embd: int = 768
    n_head: int = 12
    n_layer_base: int = 6
    n_layer_head: int = 6
    n_layer_critic: int = 0  # 0 = plain GPT (no critic_net); the official actor-critic uses 3
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    # Style control (not in Bailando): a learned embedding per style, index 0 = "any", added to every
    # token of the window. 0 = no style input (the official model). In training a window's style is
    # replaced by "any" with probability style_pdrop, so that "any" means the whole data, as
    # classifier-free guidance drops its condition.
    n_styles: int = 0
    style_pdrop: float = 0.0

    def __post_init__(self) -> None:
        check_config_fields(self, "GPT", _GPT_RANGES)
        if self.n_embd % self.n_head != 0:
            raise ModelError(
                f"GPT config: n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})"
            )
        check_parameter_count(self.parameter_count(), "GPT")

    def parameter_count(self) -> int:
        """The number of parameters this config describes (weights and biases, critic included)."""
        e = self.n_embd
        block = 12 * e * e + 13 * e  # attention (4 e x e + biases), MLP (e x 4e x 2 + biases), 2 layer norms
        embeddings = (self.vocab_size_up + self.vocab_size_down) * e + self.n_music * e + e
        positions = 3 * self.block_size * e
        heads = (self.vocab_size_up + self.vocab_size_down) * e + 2 * e
        critic = self.n_layer_critic * block + (2 * e + 2 * e if self.n_layer_critic else 0)
        styles = (self.n_styles + 1) * e if self.n_styles else 0
        return (self.n_layer_base + self.n_layer_head) * block + embeddings + positions + heads + critic + styles

    @classmethod
    def official(cls, critic: bool = False) -> GPTConfig:
        """The released Bailando sizes: 768 wide, 12 heads, 6 + 6 layers (+ a 3-layer critic)."""
        return cls(n_layer_critic=3 if critic else 0)

    @classmethod
    def tiny(cls, critic: bool = False, **overrides: object) -> GPTConfig:
        """Debug size of the golden test vectors: 64 codes, 32 wide, 2 heads, 2 + 2 (+ 2 critic) layers."""
        config = cls(
            vocab_size_up=64,
            vocab_size_down=64,
            n_embd=32,
            n_head=2,
            n_layer_base=2,
            n_layer_head=2,
            n_layer_critic=2 if critic else 0,
        )
        return replace(config, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Per-layer keys and values of the window decoded so far (one cache per window).

    ``length`` is the number of time steps in the window. Keys are kept per stream, (B, nh, S, T, hs),
    so that flattened they are in the same [music | up | down] order as a full computation of the
    window and a new step's queries see exactly the keys the 3 x 3-tiled causal mask gives them.
    """

    def __init__(self) -> None:
        self.length = 0
        self.keys: dict[int, torch.Tensor] = {}  # layer id -> (B, nh, 3, length, hs)
        self.values: dict[int, torch.Tensor] = {}

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this layer's new keys/values (B, nh, 3, t, hs); return all of them (cached first in time)."""
        if layer in self.keys:
            k = torch.cat([self.keys[layer], k], dim=3)
            v = torch.cat([self.values[layer], v], dim=3)
        self.keys[layer] = k
        self.values[layer] = v
        return k, v

    def truncate(self, length: int) -> None:
        """Forget every time step from ``length`` on (to roll back steps that were only guesses)."""
        for store in (self.keys, self.values):
            for layer, tensor in store.items():
                store[layer] = tensor[:, :, :, :length]
        self.length = min(self.length, length)


class SlotCache:
    """Keys/values of several windows side by side, each in its own "slot" at its own length, for
    ``groups`` decodings alike (the dances of a batch: the same slots, fed in the same pattern). Before
    each forward call the caller says which slots it feeds and at which time index (``feed``); the call's
    batch rows are groups x fed slots (group by group), one new time step each, and they see their own
    slot's times up to that index (so a slot starts a new window by being fed at 0). Storage is
    preallocated, (groups, nh, slots, block_size, 3, hs) per layer: time before stream, so that a
    window's keys so far are one block.

    Why: a model too large for the cache (the official GPT) spends a cached step reading its weights; the
    rows of several windows ride along on that one read, so the windows a decoder will need next can be
    built a step at a time instead of being recomputed at once when the context re-anchors.
    """

    def __init__(self, groups: int, slots: int, block_size: int) -> None:
        self.groups, self.slots, self.block_size = groups, slots, block_size
        self.keys: dict[int, torch.Tensor] = {}  # layer id -> (groups, nh, slots, block_size, 3, hs)
        self.values: dict[int, torch.Tensor] = {}
        self.fed = torch.arange(slots)  # (A,) the slots fed by the next call
        self.fed_positions = torch.zeros(slots, dtype=torch.long)  # (A,) the time index each is fed at
        self._windows = [(slot, 1) for slot in range(slots)]
        self._rows: torch.Tensor | None = None  # derived from what is fed, once per forward call

    def feed(self, slots: torch.Tensor, positions: torch.Tensor) -> None:
        """The next call feeds ``slots`` (A,) at time indices ``positions`` (A,), each below block_size."""
        if slots.shape != positions.shape or bool((positions < 0).any() or (positions >= self.block_size).any()):
            raise ValueError(f"a slot cache takes one new step per slot at a time below {self.block_size}")
        self.fed, self.fed_positions = slots, positions
        self._windows = list(zip(slots.tolist(), (positions + 1).tolist()))  # (slot, times seen) as ints
        self._rows = None

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write this layer's new keys/values (groups * A, nh, 3, hs) at the fed slots' positions."""
        _, nh, S, hs = k.shape
        G, T = self.groups, self.block_size
        if layer not in self.keys:
            self.keys[layer] = k.new_zeros(G, nh, self.slots, T, S, hs)
            self.values[layer] = v.new_zeros(G, nh, self.slots, T, S, hs)
        if self._rows is None:  # the storage row of every new (group, fed slot, head, stream) key
            device = k.device
            g = torch.arange(G, device=device)[:, None, None, None]
            slot = self.fed.to(device)[None, :, None, None]
            head = torch.arange(nh, device=device)[None, None, :, None]
            stream = torch.arange(S, device=device)[None, None, None, :]
            at = self.fed_positions.to(device)[None, :, None, None]
            self._rows = ((((g * nh + head) * self.slots + slot) * T + at) * S + stream).flatten()
        for store, new in ((self.keys[layer], k), (self.values[layer], v)):
            store.view(-1, hs).index_copy_(0, self._rows, new.reshape(-1, hs))

    def window(self, layer: int, fed_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys/values (groups * nh, (position + 1) * 3, hs) the ``fed_index``-th fed slot's new tokens
        see: every stream at times up to its position (a view of the storage)."""
        slot, end = self._windows[fed_index]
        keys, values = self.keys[layer], self.values[layer]
        G, nh, _, _, S, hs = keys.shape
        shape = (G * nh, end * S, hs)
        return keys[:, :, slot, :end].reshape(shape), values[:, :, slot, :end].reshape(shape)


class CausalCrossConditionalSelfAttention(nn.Module):
    """Attention over ``n_streams`` streams side by side (3 in Bailando: music, up, down): a token at time
    i sees every stream at times <= i."""

    def __init__(self, config: GPTConfig, attn_pdrop: float, resid_pdrop: float, n_streams: int = 3) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_streams = n_streams
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(attn_pdrop)
        self.resid_drop = nn.Dropout(resid_pdrop)
        # Set only while a decoding runs (engine.sampling): one product x -> [query | key | value] that
        # gives the three products' bits; None: the three layers
        self.fused_qkv: Callable[[torch.Tensor], torch.Tensor] | None = None
        # Lower-triangular time mask; stored (persistent) because the official checkpoints carry it.
        block = config.block_size
        self.register_buffer("mask", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

    def forward(self, x: torch.Tensor, cache: KVCache | SlotCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T3, C = x.shape  # (B, 3t, C): t new time steps of the three streams, [music | up | down]
        S = self.n_streams
        t, nh, hs = T3 // S, self.n_head, C // self.n_head
        if self.fused_qkv is not None:
            q, k, v = (part.view(B, T3, nh, hs).transpose(1, 2) for part in self.fused_qkv(x).split(C, dim=-1))
        else:
            q = self.query(x).view(B, T3, nh, hs).transpose(1, 2)  # (B, nh, 3t, hs)
            k = self.key(x).view(B, T3, nh, hs).transpose(1, 2)
            v = self.value(x).view(B, T3, nh, hs).transpose(1, 2)
        if isinstance(cache, SlotCache):  # one new step (t == 1) in each fed slot, at its own position
            G, A = cache.groups, len(cache.fed)
            cache.store(layer, k, v)
            q = q.reshape(G, A, nh, S, hs).transpose(1, 2)  # (G, nh, A, 3, hs)
            ys = []
            for a in range(A):  # each fed slot's 3 new tokens against its own window so far: no mask
                keys, values = cache.window(layer, a)  # (G * nh, (position + 1) * 3, hs)
                att = (q[:, :, a].reshape(G * nh, S, hs) @ keys.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
                ys.append(F.softmax(att, dim=-1) @ values)  # (G * nh, 3, hs)
            y = torch.stack(ys, dim=1).view(G, nh, A, S, hs)
            return self.proj(y.permute(0, 2, 3, 1, 4).reshape(B, T3, C))  # (inference only: no dropout)
        t_all = t  # time steps in the window, cached ones included
        if cache is not None:
            k, v = cache.append(layer, k.view(B, nh, S, t, hs), v.view(B, nh, S, t, hs))
            t_all = k.shape[3]
            k, v = k.reshape(B, nh, S * t_all, hs), v.reshape(B, nh, S * t_all, hs)  # (B, nh, 3T, hs)
        # Written out (not SDPA) so that the float32 results equal the official ones bit for bit.
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, 3t, 3T)
        if t > 1:  # a single new step sees every key; otherwise tril over time, tiled 3 x 3
            causal = self.mask[:, :, t_all - t : t_all, :t_all].repeat(1, 1, S, S)  # (1, 1, 3t, 3T)
            att = att.masked_fill(causal == 0, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        y = att @ v  # (B, nh, 3t, hs)
        y = y.transpose(1, 2).contiguous().view(B, T3, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, config: GPTConfig, attn_pdrop: float, resid_pdrop: float, n_streams: int = 3) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = CausalCrossConditionalSelfAttention(config, attn_pdrop, resid_pdrop, n_streams)
        self.mlp = nn.Sequential(  # names mlp.0 / mlp.2 as in the official checkpoints
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(resid_pdrop),
        )

    def forward(self, x: torch.Tensor, cache: KVCache | SlotCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class GPTBase(nn.Module):
    """Embeds the three streams and runs the shared lower blocks. Output (B, 3t, C), no final LN."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.block_size = config.block_size
        self.tok_emb_up = nn.Embedding(config.vocab_size_up, config.n_embd)
        self.tok_emb_down = nn.Embedding(config.vocab_size_down, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, 3 * config.block_size, config.n_embd))
        self.cond_emb = nn.Linear(config.n_music, config.n_embd)
        # (n_styles + 1, C): row 0 is "any"; absent without styles, so official checkpoints load strictly
        self.style_emb = nn.Embedding(config.n_styles + 1, config.n_embd) if config.n_styles else None
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.ModuleList(
            Block(config, config.attn_pdrop, config.resid_pdrop) for _ in range(config.n_layer_base)
        )

    def forward(
        self,
        codes_up: torch.Tensor,
        codes_down: torch.Tensor,
        music: torch.Tensor,
        cache: KVCache | SlotCache | None = None,
        style: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = codes_up.shape[1]
        bs = self.block_size
        tokens = torch.cat(
            [self.cond_emb(music), self.tok_emb_up(codes_up), self.tok_emb_down(codes_down)], dim=1
        )  # (B, 3t, C)
        if isinstance(cache, SlotCache):
            if t != 1 or codes_up.shape[0] != cache.groups * len(cache.fed):
                raise ValueError(f"a slot cache takes one new step per fed slot ({cache.groups} x "
                                 f"{len(cache.fed)}), got {codes_up.shape[0]} rows of {t}")
            at = cache.fed_positions.to(tokens.device).repeat(cache.groups)  # (B,) each row's time index
            positions = self.pos_emb[0, torch.stack([at, bs + at, 2 * bs + at], dim=1)]  # (B, 3, C)
            return self._blocks(tokens + positions, cache, style)
        start = 0 if cache is None else cache.length  # time index of the first new step in the window
        if start + t > self.block_size:
            raise ValueError(f"window of {start + t} time steps exceeds block_size {self.block_size}")
        positions = torch.cat(  # each stream reads its own 29-slot segment, at times start..start+t-1
            [
                self.pos_emb[:, start : start + t],
                self.pos_emb[:, bs + start : bs + start + t],
                self.pos_emb[:, 2 * bs + start : 2 * bs + start + t],
            ],
            dim=1,
        )  # (1, 3t, C)
        return self._blocks(tokens + positions, cache, style)

    def _blocks(self, x: torch.Tensor, cache: KVCache | SlotCache | None, style: torch.Tensor | None) -> torch.Tensor:
        """The style added to the embedded tokens x (B, 3t, C), then dropout and the blocks."""
        if self.style_emb is not None:
            if style is None:
                style = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            x = x + self.style_emb(style)[:, None, :]  # (B, 1, C): the same for every token
        elif style is not None and bool((style != 0).any()):
            raise ModelError("this GPT has no style input (n_styles = 0): only style 0 (any) is possible")
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, layer=i)
        return x


class GPTHead(nn.Module):
    """Upper blocks + ln_f + one bias-free linear read-out per stream (actor logits or critic values)."""

    def __init__(
        self, config: GPTConfig, n_layer: int, out_up: int, out_down: int, pdrop: tuple[float, float]
    ) -> None:
        super().__init__()
        attn_pdrop, resid_pdrop = pdrop
        self.blocks = nn.ModuleList(Block(config, attn_pdrop, resid_pdrop) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head_up = nn.Linear(config.n_embd, out_up, bias=False)
        self.head_down = nn.Linear(config.n_embd, out_down, bias=False)

    def forward(
        self, x: torch.Tensor, cache: KVCache | SlotCache | None = None, layer_offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = x.shape[1] // 3
        for i, block in enumerate(self.blocks):
            x = block(x, cache, layer=layer_offset + i)
        x = self.ln_f(x)  # (B, 3t, C)
        # music segment [0:t] is context only; up logits from [t:2t], down logits from [2t:3t]
        return self.head_up(x[:, t : 2 * t]), self.head_down(x[:, 2 * t :])


def init_gpt_weights(module: nn.Module) -> None:
    """GPT initialisation (``model.apply``): N(0, 0.02) weights, zero biases, unit layer norms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class CrossCondGPT(nn.Module):
    """Bailando's CrossCondGPT2 (n_layer_critic == 0) or CrossCondGPT2AC (n_layer_critic > 0)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.gpt_base = GPTBase(config)
        self.gpt_head = GPTHead(
            config,
            config.n_layer_head,
            config.vocab_size_up,
            config.vocab_size_down,
            (config.attn_pdrop, config.resid_pdrop),
        )
        # The official critic has no dropout at all.
        self.critic_net = (
            GPTHead(config, config.n_layer_critic, 1, 1, (0.0, 0.0)) if config.n_layer_critic > 0 else None
        )
        self.apply(init_gpt_weights)

    @property
    def block_size(self) -> int:
        return self.config.block_size

    def forward(
        self,
        codes_up: torch.Tensor,
        codes_down: torch.Tensor,
        music: torch.Tensor,
        cache: KVCache | SlotCache | None = None,
        style: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """codes_* (B, t) int64, music (B, t, n_music) -> (logits_up (B, t, Vu), logits_down (B, t, Vd)).

        ``style`` (B,) int64: 0 = any, 1.. = the model's styles (None: any); only with ``n_styles`` > 0.

        With ``cache`` the t steps are appended to the cached window (positions cache.length ..) and the
        logits are those of the new steps only; the cache then holds the longer window.
        """
        x = self.gpt_base(codes_up, codes_down, music, cache, style)  # (B, 3t, C)
        logits = self.gpt_head(x, cache, layer_offset=len(self.gpt_base.blocks))
        if isinstance(cache, KVCache):
            cache.length += codes_up.shape[1]
        return logits

    def values(
        self, codes_up: torch.Tensor, codes_down: torch.Tensor, music: torch.Tensor,
        style: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Critic outputs (value_up (B, t, 1), value_down (B, t, 1)); the state value is their sum."""
        if self.critic_net is None:
            raise ModelError("this GPT has no critic (n_layer_critic == 0); load an actor-critic checkpoint")
        x = self.gpt_base(codes_up, codes_down, music, style=style)  # (B, 3t, C)
        return self.critic_net(x)

    def loss(
        self,
        codes_up: torch.Tensor,
        codes_down: torch.Tensor,
        music: torch.Tensor,
        targets_up: torch.Tensor,
        targets_down: torch.Tensor,
        reduction: str = "mean",
        style: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training loss CE(up) + CE(down). targets_* (B, t) are the next codes.

        reduction "mean" (supervised stage) gives a scalar; "none" gives (B, t) per-token losses, as the
        actor-critic stage weights each token by its advantage.
        """
        logits_up, logits_down = self(codes_up, codes_down, music, style=style)  # (B, t, V)
        B, t = targets_up.shape
        loss_up = F.cross_entropy(logits_up.flatten(0, 1), targets_up.flatten(), reduction=reduction)
        loss_down = F.cross_entropy(logits_down.flatten(0, 1), targets_down.flatten(), reduction=reduction)
        loss = loss_up + loss_down
        return loss.view(B, t) if reduction == "none" else loss

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
