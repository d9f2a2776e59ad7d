"""The pose VQ-VAE ("choreographic memory"): two 1-D conv auto-encoders with EMA codebooks.

The 72 pose channels (24 joints x xyz, y-up metres, root-relative, no normalisation) are split into an
upper half (15 joints, 45 channels) and a lower half (9 joints, 27 channels). Each half is encoded to
one code per 8 frames, quantised against its own codebook, and decoded back. The lower half also has a
second decoder (``decoders_root``) that predicts the root velocity (3 channels) from the same codes.

Module and parameter names follow the official checkpoints (``vqvae_up.encoders.0.level_blocks.0...``),
so the official weights load with ``strict=True``; see ``engine/official.py``. Only one level is
supported (the official models have one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..skeleton import LOWER_JOINTS, UPPER_JOINTS
from .config_fields import check_config_fields, check_parameter_count

UP_CHANNELS = 3 * len(UPPER_JOINTS)  # 45
DOWN_CHANNELS = 3 * len(LOWER_JOINTS)  # 27
ROOT_CHANNELS = 3  # root velocity (x, y, z) per frame


# What a config may hold (inclusive); the official size is well inside every range.
_VQVAE_RANGES: dict[str, tuple[float, float]] = {
    "emb_width": (1, 16384), "l_bins": (1, 65536), "width": (1, 16384), "depth": (1, 64), "downs_t": (1, 8),
    "stride_t": (1, 8), "dilation_growth_rate": (1, 64), "dilation_cycle": (1, 64), "m_conv": (0.01, 64),
    "l_mu": (0, 1), "commit": (0, 1e6), "dead_code_threshold": (0, 1e12), "vel": (0, 1e6), "acc": (0, 1e6),
    "root_acc": (0, 1e6), "speed": (0, 1e6), "sample_length": (1, 10_000_000),
}


@dataclass
class VQVAEConfig:
    emb_width: int = 512  # size of one latent vector / codebook entry
    l_bins: int = 512  # codebook entries per half
    width: int = 512  # conv channels inside encoder/decoder
    depth: int = 3  # residual blocks per resolution step
    downs_t: int = 3  # number of stride-2 down-sampling steps (8x)
    stride_t: int = 2
    dilation_growth_rate: int = 3  # dilations 1, 3, 9
    dilation_cycle: int | None = None
    m_conv: float = 1.0  # width multiplier inside a residual block
    reverse_decoder_dilation: bool = True  # decoder dilations 9, 3, 1
    l_mu: float = 0.99  # EMA decay of the codebook statistics
    commit: float = 0.02  # weight of the commitment loss
    dead_code_threshold: float = 1.0  # EMA usage below which a code is restarted
    vel: float = 1.0  # weight of the velocity L1 term
    acc: float = 1.0  # weight of the acceleration L1 term
    root_acc: float = 1.0  # weight of the root-velocity acceleration term (root stage)
    speed: float = 0.0  # weight of the joint-speed term (L1 of each joint's speed, not its direction)
    with_root_decoder: bool = True  # the lower half's root-velocity decoder (official SepVQVAER)
    sample_length: int = 240  # training clip length (frames), kept for the training package

    def __post_init__(self) -> None:
        check_config_fields(self, "VQ-VAE", _VQVAE_RANGES)
        check_parameter_count(self.parameter_count(), "VQ-VAE")

    def parameter_count(self) -> int:
        """An upper bound of the number of parameters (25-45 % above the real count at the official and
        the tiny sizes), enough to refuse an absurd config before anything is allocated."""
        w, e = self.width, self.emb_width
        state = max(1, int(self.m_conv * w))
        res_block = 3 * w * state + state * w + w + state
        step = 4 * w * w + w + self.depth * res_block  # one down- or up-sampling step with its res blocks
        coder = 3 * 72 * w + self.downs_t * step + 3 * w * max(e, 72)  # in/out convs + the steps
        coders = 2 + 1 + int(self.with_root_decoder)
        return 2 * coder + coders * coder + 2 * self.l_bins * e

    @property
    def downsample(self) -> int:
        """Frames per code (8 for the official model)."""
        return self.stride_t ** self.downs_t

    @classmethod
    def tiny(cls, **overrides: Any) -> VQVAEConfig:
        """The debug size of the golden vectors: codebook 64 x 32, width 32."""
        return cls(**{"emb_width": 32, "l_bins": 64, "width": 32, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VQVAEConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VQ-VAE config fields: {sorted(unknown)}")
        return cls(**d)


# --- convolutional encoder / decoder ----------------------------------------------------------------
class ResConv1DBlock(nn.Module):
    """x + Conv1x1(ReLU(DilatedConv3(ReLU(x)))); the time length is preserved."""

    def __init__(self, n_in: int, n_state: int, dilation: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(n_in, n_state, 3, 1, padding=dilation, dilation=dilation),
            nn.ReLU(),
            nn.Conv1d(n_state, n_in, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return x + self.model(x)


class Resnet1D(nn.Module):
    def __init__(self, width: int, cfg: VQVAEConfig, reverse_dilation: bool = False):
        super().__init__()

        def dilation(i: int) -> int:
            step = i if cfg.dilation_cycle is None else i % cfg.dilation_cycle
            return cfg.dilation_growth_rate ** step

        blocks = [ResConv1DBlock(width, int(cfg.m_conv * width), dilation(i)) for i in range(cfg.depth)]
        if reverse_dilation:
            blocks = blocks[::-1]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class EncoderBlock(nn.Module):
    """downs_t x [strided conv (halves T), residual stack], then a conv to emb_width."""

    def __init__(self, in_channels: int, cfg: VQVAEConfig):
        super().__init__()
        kernel, pad = cfg.stride_t * 2, cfg.stride_t // 2
        layers: list[nn.Module] = []
        for i in range(cfg.downs_t):
            layers.append(nn.Sequential(
                nn.Conv1d(in_channels if i == 0 else cfg.width, cfg.width, kernel, cfg.stride_t, pad),
                Resnet1D(cfg.width, cfg),
            ))
        layers.append(nn.Conv1d(cfg.width, cfg.emb_width, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, emb, T/8)
        return self.model(x)


class DecoderBlock(nn.Module):
    """A conv from emb_width, then downs_t x [residual stack, transposed conv (doubles T)]."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        kernel, pad = cfg.stride_t * 2, cfg.stride_t // 2
        layers: list[nn.Module] = [nn.Conv1d(cfg.emb_width, cfg.width, 3, 1, 1)]
        for i in range(cfg.downs_t):
            out = cfg.emb_width if i == cfg.downs_t - 1 else cfg.width
            layers.append(nn.Sequential(
                Resnet1D(cfg.width, cfg, reverse_dilation=cfg.reverse_decoder_dilation),
                nn.ConvTranspose1d(cfg.width, out, kernel, cfg.stride_t, pad),
            ))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, emb, N) -> (B, emb, 8N)
        return self.model(x)


class Encoder(nn.Module):
    def __init__(self, in_channels: int, cfg: VQVAEConfig):
        super().__init__()
        self.level_blocks = nn.ModuleList([EncoderBlock(in_channels, cfg)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, emb, T/8)
        return self.level_blocks[0](x)


class Decoder(nn.Module):
    def __init__(self, out_channels: int, cfg: VQVAEConfig):
        super().__init__()
        self.level_blocks = nn.ModuleList([DecoderBlock(cfg)])
        self.out = nn.Conv1d(cfg.emb_width, out_channels, 3, 1, 1)  # no output activation

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, emb, N) -> (B, C, 8N)
        return self.out(self.level_blocks[0](z))


# --- EMA codebook --------------------------------------------------------------------------------------
ReduceFn = Callable[[torch.Tensor], None]  # in-place collective on a tensor (DDP all-reduce / broadcast)


class Codebook(nn.Module):
    """Nearest-neighbour quantiser whose entries follow an EMA of the vectors assigned to them.

    ``k`` is the codebook (the only buffer the official checkpoints hold). ``k_sum``, ``k_elem`` and
    ``initialised`` are the EMA statistics, kept as buffers so that a resumed training run continues
    exactly. In training mode each forward pass updates the codebook (first batch: k-means-style init
    from random encoder outputs; then EMA with ``l_mu`` and restart of codes used less than the
    threshold); in eval mode the codebook never changes.

    For data-parallel training set ``all_reduce`` (in-place sum over ranks) and ``broadcast`` (in-place
    copy from rank 0) so every rank keeps the same codebook.
    """

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.l_bins, self.emb_width = cfg.l_bins, cfg.emb_width
        self.mu, self.threshold = cfg.l_mu, cfg.dead_code_threshold
        # Random until the first training batch replaces it with encoder outputs (``initialised``), so
        # that an untrained model still decodes different codes to different poses.
        self.register_buffer("k", torch.randn(cfg.l_bins, cfg.emb_width))
        self.register_buffer("k_sum", torch.zeros(cfg.l_bins, cfg.emb_width))
        self.register_buffer("k_elem", torch.ones(cfg.l_bins))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.all_reduce: ReduceFn | None = None
        self.broadcast: ReduceFn | None = None

    def restore_statistics(self) -> None:
        """After loading a codebook without EMA statistics (official weights): resume from ``k``."""
        self.k_sum.copy_(self.k)
        self.k_elem.fill_(1.0)
        self.initialised.fill_(True)

    def quantise(self, x: torch.Tensor) -> torch.Tensor:  # (M, emb) -> (M,) code indices
        # squared L2 distance expanded as |x|^2 - 2 x.k + |k|^2 (the official arithmetic, so ties and
        # near-ties resolve the same way and encoded codes match exactly)
        k_t = self.k.t()  # (emb, L)
        distance = (x**2).sum(-1, keepdim=True) - 2 * (x @ k_t) + (k_t**2).sum(0, keepdim=True)
        return distance.argmin(-1)

    def dequantise(self, codes: torch.Tensor) -> torch.Tensor:  # (...) -> (..., emb)
        return F.embedding(codes, self.k)

    def _random_rows(self, x: torch.Tensor) -> torch.Tensor:  # (M, emb) -> (L, emb)
        """L encoder outputs in random order, tiled with small noise when there are fewer than L."""
        if x.shape[0] < self.l_bins:
            repeats = (self.l_bins + x.shape[0] - 1) // x.shape[0]
            std = 0.01 / np.sqrt(x.shape[1])
            x = x.repeat(repeats, 1)
            x = x + torch.randn_like(x) * std
        rows = x[torch.randperm(x.shape[0], device=x.device)][: self.l_bins].contiguous()
        if self.broadcast is not None:
            self.broadcast(rows)
        return rows

    @torch.no_grad()
    def _initialise(self, x: torch.Tensor) -> None:
        self.k.copy_(self._random_rows(x))
        self.k_sum.copy_(self.k)
        self.k_elem.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step over a batch of encoder outputs x (M, emb) assigned to ``codes`` (M,).

        Always in float32, also under bf16/fp16 autocast: in bfloat16 the per-code sums and counts
        would round (counts above 256 are no longer exact) and the EMA would drift.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            one_hot = torch.zeros(self.l_bins, x.shape[0], device=x.device, dtype=x.dtype)
            one_hot.scatter_(0, codes.view(1, -1), 1.0)  # (L, M)
            batch_sum = one_hot @ x  # (L, emb)
            batch_count = one_hot.sum(-1)  # (L,)
            restart_rows = self._random_rows(x)
            if self.all_reduce is not None:
                self.all_reduce(batch_sum)
                self.all_reduce(batch_count)
            self.k_sum.mul_(self.mu).add_(batch_sum, alpha=1 - self.mu)
            self.k_elem.mul_(self.mu).add_(batch_count, alpha=1 - self.mu)
            used = (self.k_elem >= self.threshold).to(x.dtype).unsqueeze(1)  # (L, 1)
            mean = self.k_sum / self.k_elem.unsqueeze(1)
            self.k.copy_(used * mean + (1 - used) * restart_rows)  # dead codes jump to a random output

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, emb, N) -> codes (B, N), quantised (B, emb, N) with straight-through gradient, commit loss."""
        b, c, n = z.shape
        x = z.permute(0, 2, 1).reshape(-1, c)  # (B*N, emb)
        update = self.training
        if update and not bool(self.initialised):
            self._initialise(x.detach())
        codes = self.quantise(x.detach())
        x_q = self.dequantise(codes)  # (B*N, emb), from the codebook before this step's update
        if update:
            self._update(x.detach(), codes)
        commit_loss = F.mse_loss(x, x_q.detach())  # |sg(e) - z|^2 / numel
        x_q = x + (x_q - x).detach()  # straight-through estimator
        return codes.view(b, n), x_q.view(b, n, c).permute(0, 2, 1), commit_loss


class Bottleneck(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.level_blocks = nn.ModuleList([Codebook(cfg)])

    @property
    def codebook(self) -> Codebook:
        return self.level_blocks[0]  # type: ignore[return-value]


# --- one half and the split model ---------------------------------------------------------------------
def _l1_with_derivatives(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """L1 of values, first and second time differences; pred/target (B, T, C)."""
    recon = F.l1_loss(pred, target)
    vel = F.l1_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])
    acc_p = pred[:, 2:] + pred[:, :-2] - 2 * pred[:, 1:-1]
    acc_t = target[:, 2:] + target[:, :-2] - 2 * target[:, 1:-1]
    return recon, vel, F.l1_loss(acc_p, acc_t)


def _speed_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 of each joint's speed (the length of its per-frame step; channels are joints x 3), its direction
    free. A decoder unsure of a move's direction lowers the velocity term by playing it slower (the
    average of the moves a code stands for; weighting that term up made the decoded motion slower still,
    assets/MODEL_CARD.md); this term charges for the lost speed."""
    step_p = (pred[:, 1:] - pred[:, :-1]).reshape(*pred.shape[:1], pred.shape[1] - 1, -1, 3)
    step_t = (target[:, 1:] - target[:, :-1]).reshape(*target.shape[:1], target.shape[1] - 1, -1, 3)
    return F.l1_loss(step_p.norm(dim=-1), step_t.norm(dim=-1))


class HalfVQVAE(nn.Module):
    """Auto-encoder of one body half: (B, T, C) poses <-> (B, T/8) codes."""

    def __init__(self, channels: int, cfg: VQVAEConfig, with_root_decoder: bool = False):
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleList([Encoder(channels, cfg)])
        self.decoders = nn.ModuleList([Decoder(channels, cfg)])
        self.bottleneck = Bottleneck(cfg)
        self.decoders_root = nn.ModuleList([Decoder(ROOT_CHANNELS, cfg)]) if with_root_decoder else None

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, emb, T/8)
        return self.encoders[0](x.permute(0, 2, 1).float())

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T/8) codes
        z = self.encode_latent(x)  # (B, emb, N)
        b, c, n = z.shape
        return self.bottleneck.codebook.quantise(z.permute(0, 2, 1).reshape(-1, c)).view(b, n)

    def latent_of(self, codes: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, emb, N)
        return self.bottleneck.codebook.dequantise(codes.long()).permute(0, 2, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, 8N, C)
        """Decoded half; with a root decoder, channels 0-2 are replaced by the predicted root velocity."""
        z = self.latent_of(codes)
        x = self.decoders[0](z).permute(0, 2, 1)  # (B, 8N, C)
        if self.decoders_root is not None:
            vel = self.decoders_root[0](z).permute(0, 2, 1)  # (B, 8N, 3)
            x = torch.cat([vel, x[:, :, ROOT_CHANNELS:]], dim=-1)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training pass (pose decoder only): x (B, T, C) -> reconstruction (B, T, C), losses."""
        codes, z_q, commit = self.bottleneck.codebook(self.encode_latent(x))
        recon = self.decoders[0](z_q).permute(0, 2, 1)
        return recon, self._losses(recon, x, commit)

    def forward_decoder(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Decoder fine-tuning pass: x (B, T, C) -> reconstruction (B, T, C), losses; the codes come from
        the frozen encoder and codebook (read, never updated), so only the pose decoder learns."""
        with torch.no_grad():
            z_q = self.latent_of(self.encode(x))
        recon = self.decoders[0](z_q).permute(0, 2, 1)
        return recon, self._losses(recon, x, None)

    def _losses(self, recon: torch.Tensor, x: torch.Tensor, commit: torch.Tensor | None
                ) -> dict[str, torch.Tensor]:
        """L1 + velocity + acceleration (+ commitment, + speed) of a reconstruction."""
        l1, vel, acc = _l1_with_derivatives(recon, x)
        losses = {"recon": l1, "velocity": vel, "acceleration": acc}
        # two sums rather than one with commit = 0: with commit, the official loss's order of terms, so
        # step-1 runs add in the same order (and round the same) as before the decoder stage existed
        if commit is None:
            loss = l1 + self.cfg.vel * vel + self.cfg.acc * acc
        else:
            loss = l1 + self.cfg.commit * commit + self.cfg.vel * vel + self.cfg.acc * acc
            losses["commit"] = commit
        if self.cfg.speed:
            losses["speed"] = _speed_l1(recon, x)
            loss = loss + self.cfg.speed * losses["speed"]
        losses["loss"] = loss
        return losses


def _channels(joints: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.stack([3 * joints, 3 * joints + 1, 3 * joints + 2], 1).reshape(-1))


UP_INDEX = _channels(UPPER_JOINTS)  # (45,) channel indices into the 72-d pose
DOWN_INDEX = _channels(LOWER_JOINTS)  # (27,); channels 0-2 (the root) come first


@contextmanager
def _float32_convolutions() -> Iterator[None]:
    """cuDNN convolutions without TF32 inside the block (restored after; a no-op on a CPU)."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


class SepVQVAE(nn.Module):
    """The two halves (official ``SepVQVAER`` when ``with_root_decoder``)."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.config = cfg
        self.vqvae_up = HalfVQVAE(UP_CHANNELS, cfg)
        self.vqvae_down = HalfVQVAE(DOWN_CHANNELS, cfg, with_root_decoder=cfg.with_root_decoder)

    @property
    def codebooks(self) -> tuple[Codebook, Codebook]:
        return self.vqvae_up.bottleneck.codebook, self.vqvae_down.bottleneck.codebook

    def set_distributed(self, all_reduce: ReduceFn | None, broadcast: ReduceFn | None) -> None:
        """Hooks that keep the codebooks identical across data-parallel ranks (None: single process)."""
        for book in self.codebooks:
            book.all_reduce, book.broadcast = all_reduce, broadcast

    def codes_digest(self) -> str:
        """SHA-256 of what decides a pose's codes: the encoders' weights and the codebooks (not the
        decoders, which only decide what the codes become). A model trained on codes (a GPT, the duet's
        follower) fits every VQ-VAE with its digest."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            if ".encoders." in name or name.endswith(".bottleneck.level_blocks.0.k"):
                digest.update(name.encode())
                digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
        return digest.hexdigest()

    def restore_codebook_statistics(self) -> None:
        for book in self.codebooks:
            book.restore_statistics()

    @staticmethod
    def _split(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 72) -> upper (B, T, 45), lower (B, T, 27) with the root channels zeroed."""
        up = pose[..., UP_INDEX.to(pose.device)]
        down = pose[..., DOWN_INDEX.to(pose.device)].clone()
        down[..., :ROOT_CHANNELS] = 0.0
        return up, down

    @staticmethod
    def _merge(up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:  # -> (B, T, 72)
        pose = up.new_zeros(*up.shape[:-1], 72)
        pose[..., UP_INDEX.to(up.device)] = up
        pose[..., DOWN_INDEX.to(up.device)] = down
        return pose

    @torch.no_grad()
    def encode(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pose (B, T, 72), T a multiple of 8 -> codes_up (B, T/8), codes_down (B, T/8)."""
        if pose.ndim != 3 or pose.shape[-1] != 72:
            raise ValueError(f"expected a pose of shape (B, T, 72), got {tuple(pose.shape)}")
        up, down = self._split(pose.float())
        return self.vqvae_up.encode(up), self.vqvae_down.encode(down)

    def decode(self, codes_up: torch.Tensor, codes_down: torch.Tensor) -> torch.Tensor:
        """codes (B, N) each -> (B, 8N, 72): channels 0-2 root velocity, other joints root-relative.

        In full float32 on every device: cuDNN's default TF32 convolutions moved a GPU's joints by
        millimetres from the CPU's, and the foot planting and beat sync after decoding turned that into
        centimetres (a greedy dance of the default model: up to 0.49 m on an H200)."""
        if codes_up.shape != codes_down.shape:
            raise ValueError(f"code shapes differ: {tuple(codes_up.shape)} vs {tuple(codes_down.shape)}")
        with _float32_convolutions():
            return self._merge(self.vqvae_up.decode(codes_up), self.vqvae_down.decode(codes_down))

    def forward(self, pose: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training step 1: pose (B, T, 72) root-relative -> reconstruction (B, T, 72), losses.

        ``losses["loss"]`` is the mean of the two halves' L1 + velocity + acceleration + commit terms.
        """
        up, down = self._split(pose.float())
        rec_up, loss_up = self.vqvae_up(up)
        rec_down, loss_down = self.vqvae_down(down)
        losses = {name: 0.5 * (loss_up[name] + loss_down[name]) for name in loss_up}
        losses.update({f"{name}_up": v for name, v in loss_up.items()})
        losses.update({f"{name}_down": v for name, v in loss_down.items()})
        return self._merge(rec_up, rec_down), losses

    def forward_decoders(self, pose: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Decoder fine-tuning (not in Bailando): pose (B, T, 72) root-relative -> reconstruction, losses.

        Only the two pose decoders learn; the codes of a pose are those of the frozen encoders and
        codebooks, so a GPT trained on them (and a follower) stays valid. ``losses["loss"]`` is the mean of
        the halves' L1 + velocity + acceleration (+ speed) terms.
        """
        up, down = self._split(pose.float())
        rec_up, loss_up = self.vqvae_up.forward_decoder(up)
        rec_down, loss_down = self.vqvae_down.forward_decoder(down)
        losses = {name: 0.5 * (loss_up[name] + loss_down[name]) for name in loss_up}
        return self._merge(rec_up, rec_down), losses

    def forward_root(self, pose: torch.Tensor, root_velocity: torch.Tensor
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training step 2 (root branch): only ``decoders_root`` learns.

        pose (B, T, 72) root-relative, root_velocity (B, T, 3) with v_t = r_{t+1} - r_t.
        The lower-half codes come from the frozen encoder and codebook (never updated here).
        Returns the predicted velocity (B, T, 3) and the losses (L1 + root_acc * L1 of its difference).
        """
        if self.vqvae_down.decoders_root is None:
            raise ValueError("this VQ-VAE has no root decoder (with_root_decoder=False)")
        with torch.no_grad():
            _, down = self._split(pose.float())
            z = self.vqvae_down.latent_of(self.vqvae_down.encode(down))  # (B, emb, N)
        pred = self.vqvae_down.decoders_root[0](z).permute(0, 2, 1)  # (B, T, 3)
        target = root_velocity.float()
        l1 = F.l1_loss(pred, target)
        acc = F.l1_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])
        return pred, {"loss": l1 + self.config.root_acc * acc, "velocity": l1, "acceleration": acc}


def integrate_root(decoded: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Decoded pose (B, T, 72) with root velocity in channels 0-2 -> world joints (B, T, 24, 3).

    As the official code: root[0] = 0, root[t] = root[t-1] + vel[t-1]; the root is added to every joint
    and joint 0 becomes the root itself. Returns the same array type it was given.
    """
    if isinstance(decoded, np.ndarray):
        return integrate_root(torch.from_numpy(np.array(decoded))).numpy()
    joints = decoded.reshape(*decoded.shape[:-1], 24, 3)
    # A running float32 sum frame after frame, as the official numpy code does, so that long dances
    # match it to the last bit (torch's cumsum rounds differently).
    vel = joints[..., :-1, 0, :].detach().float().cpu().numpy()  # (B, T-1, 3); the last one is unused
    root_np = np.concatenate([np.zeros_like(vel[..., :1, :]), np.cumsum(vel, axis=-2)], axis=-2)
    root = torch.from_numpy(root_np).to(device=joints.device, dtype=joints.dtype)  # (B, T, 3)
    world = joints + root.unsqueeze(-2)
    world[..., 0, :] = root
    return world
