"""The duet's follower GPT (Duolando's task: a follower dancing with a leader), on the solo model's codes.

One sequence per window of t time steps holds four streams side by side:

    [ cond_0 .. cond_{t-1} | up_0 .. up_{t-1} | down_0 .. down_{t-1} | rel_0 .. rel_{t-1} ]   (4t tokens)

``up``/``down`` are the follower's pose codes (the shared VQ-VAE's), ``rel`` where the follower stands
around the leader (``engine.relative_position``). ``cond_i`` is what the follower hears and sees for the
step it predicts: the music and the leader's codes of that step, plus a look-ahead over the leader's
and the music's next ``lookahead`` steps (a small transformer over those steps whose first output is
the summary: the follower anticipates the leader's lead). The caller aligns the condition with the step
being predicted, as for the solo GPT's music (``engine.sampling``): input i holds follower codes i and
the condition of step i + 1; the outputs of the up, down and rel streams at i predict step i + 1.

The blocks, attention mask (lower-triangular over time, tiled 4 x 4) and key/value cache are the solo
GPT's (``engine.models.gpt``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .config_fields import check_config_fields, check_parameter_count
from .gpt import Block, KVCache, init_gpt_weights

N_STREAMS = 4  # cond, up, down, rel

_FOLLOWER_RANGES: dict[str, tuple[float, float]] = {
    "vocab_size_up": (1, 65536), "vocab_size_down": (1, 65536), "n_relpos": (1, 65536),
    "block_size": (2, 4096), "n_music": (1, 8192), "lookahead": (0, 256), "n_embd": (1, 16384),
    "n_head": (1, 1024), "n_layer": (1, 512), "n_layer_look": (1, 64), "embd_pdrop": (0, 1),
    "resid_pdrop": (0, 1), "attn_pdrop": (0, 1),
}


@dataclass
class FollowerConfig:
    vocab_size_up: int = 256  # the shared VQ-VAE's codebooks (leader and follower use the same)
    vocab_size_down: int = 256
    n_relpos: int = 384  # relative-position codes (engine.relative_position.DEFAULT_GRID.size)
    block_size: int = 29  # time steps per window
    n_music: int = 438
    lookahead: int = 8  # steps of the leader and the music ahead of each step (8 = about 1 s)
    n_embd: int = 192
    n_head: int = 6
    n_layer: int = 6  # blocks over the four streams
    n_layer_look: int = 1  # blocks of the look-ahead encoder
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1

    def __post_init__(self) -> None:
        check_config_fields(self, "follower GPT", _FOLLOWER_RANGES)
        if self.n_embd % self.n_head != 0:
            raise ModelError(f"follower GPT config: n_embd ({self.n_embd}) must be a multiple of n_head "
                             f"({self.n_head})")
        check_parameter_count(self.parameter_count(), "follower GPT")

    def parameter_count(self) -> int:
        """The number of parameters this config describes (checked before anything is allocated)."""
        e = self.n_embd
        block = 12 * e * e + 13 * e  # attention, MLP (4x), two layer norms
        look_block = 12 * e * e + 13 * e  # the encoder layer: the same shapes
        vocab = self.vocab_size_up + self.vocab_size_down
        embeddings = 2 * vocab * e + self.n_relpos * e + (self.n_music * e + e)  # follower + leader tables
        positions = N_STREAMS * self.block_size * e + (self.lookahead + 1) * e
        heads = (vocab + self.n_relpos) * e + 2 * e  # bias-free read-outs + ln_f
        return self.n_layer * block + self.n_layer_look * look_block + embeddings + positions + heads

    @classmethod
    def tiny(cls, **overrides: object) -> FollowerConfig:
        """Debug size: 64 codes, 48 relative positions, 32 wide, 2 heads, 2 layers, look-ahead 3."""
        config = cls(vocab_size_up=64, vocab_size_down=64, n_relpos=48, n_embd=32, n_head=2, n_layer=2,
                     lookahead=3)
        return replace(config, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


class LookAhead(nn.Module):
    """Each step's condition from that step and the ``lookahead`` steps after it: the music and the
    leader's codes of every step, a non-causal transformer over the 1 + lookahead steps, and its first
    output as the summary."""

    def __init__(self, config: FollowerConfig) -> None:
        super().__init__()
        self.lookahead = config.lookahead
        self.music = nn.Linear(config.n_music, config.n_embd)
        self.leader_up = nn.Embedding(config.vocab_size_up, config.n_embd)
        self.leader_down = nn.Embedding(config.vocab_size_down, config.n_embd)
        self.pos = nn.Parameter(torch.zeros(1, config.lookahead + 1, config.n_embd))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(config.n_embd, config.n_head, 4 * config.n_embd, config.resid_pdrop,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(config.n_layer_look)
        )

    def forward(self, leader_up: torch.Tensor, leader_down: torch.Tensor, music: torch.Tensor) -> torch.Tensor:
        """leader_* (B, t + L) int64, music (B, t + L, n_music) -> conditions (B, t, C)."""
        x = self.music(music) + self.leader_up(leader_up) + self.leader_down(leader_down)  # (B, t + L, C)
        B, n, C = x.shape
        t, w = n - self.lookahead, self.lookahead + 1
        windows = x.unfold(1, w, 1).permute(0, 1, 3, 2).reshape(B * t, w, C) + self.pos  # (B t, 1 + L, C)
        for block in self.blocks:
            windows = block(windows)
        return windows[:, 0].view(B, t, C)


class FollowerGPT(nn.Module):
    """Follower codes (up, down, relative position) given the leader and the music; see the module docs."""

    def __init__(self, config: FollowerConfig) -> None:
        super().__init__()
        self.config = config
        e = config.n_embd
        self.look = LookAhead(config)
        self.tok_up = nn.Embedding(config.vocab_size_up, e)
        self.tok_down = nn.Embedding(config.vocab_size_down, e)
        self.tok_rel = nn.Embedding(config.n_relpos, e)
        self.pos = nn.Parameter(torch.zeros(1, N_STREAMS * config.block_size, e))
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.ModuleList(
            Block(config, config.attn_pdrop, config.resid_pdrop, n_streams=N_STREAMS)  # type: ignore[arg-type]
            for _ in range(config.n_layer)
        )
        self.ln_f = nn.LayerNorm(e)
        self.head_up = nn.Linear(e, config.vocab_size_up, bias=False)
        self.head_down = nn.Linear(e, config.vocab_size_down, bias=False)
        self.head_rel = nn.Linear(e, config.n_relpos, bias=False)
        self.apply(init_gpt_weights)

    def forward(
        self,
        up: torch.Tensor,
        down: torch.Tensor,
        rel: torch.Tensor,
        leader_up: torch.Tensor,
        leader_down: torch.Tensor,
        music: torch.Tensor,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Follower codes up/down/rel (B, t) int64 and the condition of the steps they predict, with its
        look-ahead: leader_* (B, t + L) int64, music (B, t + L, n_music) -> logits for the next step's
        up (B, t, Vu), down (B, t, Vd), rel (B, t, R).

        With ``cache`` the t steps are appended to the cached window, as ``CrossCondGPT.forward``.
        """
        B, t = up.shape
        L = self.config.lookahead
        if leader_up.shape != (B, t + L) or leader_down.shape != (B, t + L) or music.shape[:2] != (B, t + L):
            raise ModelError(f"the condition must cover the {t} steps and {L} ahead: leader codes (B, {t + L}) "
                             f"and music (B, {t + L}, n_music), got {tuple(leader_up.shape)}, "
                             f"{tuple(leader_down.shape)}, {tuple(music.shape)}")
        start = 0 if cache is None else cache.length
        bs = self.config.block_size
        if start + t > bs:
            raise ValueError(f"window of {start + t} time steps exceeds block_size {bs}")
        streams = [self.look(leader_up, leader_down, music), self.tok_up(up), self.tok_down(down), self.tok_rel(rel)]
        positions = torch.cat([self.pos[:, s * bs + start : s * bs + start + t] for s in range(N_STREAMS)], dim=1)
        x = self.drop(torch.cat(streams, dim=1) + positions)  # (B, 4t, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, layer=i)
        x = self.ln_f(x)
        if cache is not None:
            cache.length += t
        # the condition stream [0:t] is context only
        return self.head_up(x[:, t : 2 * t]), self.head_down(x[:, 2 * t : 3 * t]), self.head_rel(x[:, 3 * t :])

    def loss(self, *inputs: torch.Tensor, targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """``follower_loss`` of ``forward(*inputs)`` against the next step's codes ``targets``."""
        return follower_loss(self(*inputs), targets)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def follower_loss(logits: tuple[torch.Tensor, ...], targets: tuple[torch.Tensor, ...]
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """CE(up) + CE(down) + CE(rel) of the follower's logits (each (B, t, V)) against the next step's codes
    (each (B, t)); also each part's value."""
    parts = {name: F.cross_entropy(lg.flatten(0, 1).float(), target.flatten())
             for name, lg, target in zip(("up", "down", "rel"), logits, targets)}
    return sum(parts.values(), torch.zeros((), device=logits[0].device)), {
        k: float(v.detach()) for k, v in parts.items()}
