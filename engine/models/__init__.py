"""The two networks: the pose VQ-VAE (``vqvae``) and the cross-conditional motion GPT (``gpt``)."""

from .gpt import CrossCondGPT, GPTConfig
from .vqvae import SepVQVAE, VQVAEConfig, integrate_root

__all__ = ["CrossCondGPT", "GPTConfig", "SepVQVAE", "VQVAEConfig", "integrate_root"]
