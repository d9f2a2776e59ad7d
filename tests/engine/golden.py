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
    """The golden pose encodes to the official codes; the official sampled codes decode to the official
    poses (raw and with the root integrated), to 1e-5."""
    up, down = vqvae.encode(torch.from_numpy(io["vqvae_input_pose"]))
    np.testing.assert_array_equal(up.numpy(), io["encode_up"])
    np.testing.assert_array_equal(down.numpy(), io["encode_down"])

    with torch.no_grad():
        decoded = vqvae.decode(torch.from_numpy(io["sample_shift_none_up"]),
                               torch.from_numpy(io["sample_shift_none_down"]))
    assert decoded.shape == (1, 648, 72)
    np.testing.assert_allclose(decoded.numpy(), io["decode_raw"], atol=1e-5, rtol=0)

    # The golden vector holds the integrated root in channels 0-2 and the joints still root-relative;
    # integrate_root also adds the root to every joint.
    world = integrate_root(decoded).numpy()[0]  # (648, 24, 3)
    golden = io["decode_root_integrated"][0].reshape(-1, 24, 3)
    np.testing.assert_allclose(world[:, 0], golden[:, 0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(world[:, 1:], golden[:, 1:] + golden[:, :1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(world[:, 1:] - world[:, :1], golden[:, 1:], atol=1e-5, rtol=0)
