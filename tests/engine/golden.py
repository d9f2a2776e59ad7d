"""Helpers of the tests against the official implementation: the tiny official models with their golden
weights, and the VQ-VAE parity check on the golden vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.models.gpt import CrossCondGPT, GPTConfig
from engine.models.vqvae import SepVQVAE, integrate_root

# Buffers our codebooks keep besides the official ``k`` (the EMA statistics).
OUR_EXTRA_BUFFERS = ("k_sum", "k_elem", "initialised")

# How far float32 results may drift from the golden vectors, in units of float32 rounding (eps = 1.19e-7)
# at the magnitude of the values compared. The golden vectors were made on an AMD EPYC; another CPU's BLAS
# kernels (AVX-512 on an Intel Xeon) sum each dot product in another order, and every layer of the network
# rounds at eps of its operands' magnitude, compounding over the ~10 sequential operations of a window
# (attention, softmax, layer norm, MLP per block). Measured: 6.0e-5 on logits of magnitude 8.5 on an Intel
# Xeon (59 eps x magnitude), and 6e-5 between float32 and float64 of one window here. 128 leaves twice that
# margin; a real parity bug (a wrong mask, a missing bias, swapped heads) moves values by 1e-2 or more.
# Discrete results (codes, greedy tokens, the argmax of the logits) are compared exactly instead.
PARITY_ULPS = 128


def float32_atol(*references: np.ndarray | torch.Tensor) -> float:
    """The parity bound for float32 values computed from operands as large as the largest of
    ``references``: ``PARITY_ULPS * eps32 * max|reference|``."""
    magnitude = max(float(np.abs(np.asarray(r)).max()) for r in references)
    return PARITY_ULPS * float(np.finfo(np.float32).eps) * magnitude


def assert_float32_parity(ours: np.ndarray | torch.Tensor, golden: np.ndarray, name: str = "",
                          scale: np.ndarray | None = None) -> None:
    """``ours`` equals ``golden`` within float32 rounding at the golden values' magnitude (or at the
    magnitude of ``scale``: the operands a difference was taken from)."""
    ours = np.asarray(ours)
    atol = float32_atol(golden if scale is None else scale)
    np.testing.assert_allclose(ours, golden, rtol=0, atol=atol, err_msg=f"{name} (atol {atol:.2g})")


def assert_same_argmax(logits: np.ndarray | torch.Tensor, golden: np.ndarray, name: str = "") -> None:
    """The most likely code of every position is the golden one, wherever the golden top two are further
    apart than the float32 parity bound (closer ones may swap through rounding alone)."""
    logits, golden = np.asarray(logits), np.asarray(golden)
    top2 = np.sort(golden, axis=-1)[..., -2:]
    decided = (top2[..., 1] - top2[..., 0]) > 2 * float32_atol(golden)
    assert decided.mean() > 0.9, f"{name}: too few positions with a clear best code to check"
    np.testing.assert_array_equal(logits.argmax(-1)[decided], golden.argmax(-1)[decided], err_msg=name)


def load_tiny_official_gpt(golden_dir: Path, critic: bool) -> CrossCondGPT:
    """The tiny official GPT (or actor-critic) with its golden weights, loaded by name, strict."""
    weights = np.load(golden_dir / "tiny_official_weights.npz")
    prefix = "gpt_ac/"
    state = {
        name[len(prefix) :]: torch.from_numpy(weights[name])
        for name in weights.files
        if name.startswith(prefix) and (critic or not name.startswith(prefix + "critic_net."))
    }
    model = CrossCondGPT(GPTConfig.tiny(critic=critic))
    model.load_state_dict(state, strict=True)
    return model.eval()


def assert_vqvae_parity(vqvae: SepVQVAE, io: dict[str, np.ndarray]) -> None:
    """The golden pose encodes to the official codes (exactly); the official sampled codes decode to the
    official poses (raw and with the root integrated) within float32 rounding."""
    up, down = vqvae.encode(torch.from_numpy(io["vqvae_input_pose"]))
    np.testing.assert_array_equal(up.numpy(), io["encode_up"])
    np.testing.assert_array_equal(down.numpy(), io["encode_down"])

    with torch.no_grad():
        decoded = vqvae.decode(torch.from_numpy(io["sample_shift_none_up"]),
                               torch.from_numpy(io["sample_shift_none_down"]))
    assert decoded.shape == (1, 648, 72)
    assert_float32_parity(decoded, io["decode_raw"], "decode_raw")

    # The golden vector holds the integrated root in channels 0-2 and the joints still root-relative;
    # integrate_root also adds the root to every joint.
    world = integrate_root(decoded).numpy()[0]  # (648, 24, 3)
    golden = io["decode_root_integrated"][0].reshape(-1, 24, 3)
    # The root is a running sum over 648 frames (up to 41 m here): its rounding is relative to that sum,
    # and so is that of the joints it was added to, and of their difference from it.
    root = golden[:, :1]
    assert_float32_parity(world[:, 0], golden[:, 0], "integrated root")
    assert_float32_parity(world[:, 1:], golden[:, 1:] + root, "world joints", scale=root)
    assert_float32_parity(world[:, 1:] - world[:, :1], golden[:, 1:], "joints minus root", scale=root)
