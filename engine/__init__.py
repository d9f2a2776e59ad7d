"""Bailando inference engine: music features, VQ-VAE + cross-conditional GPT, positions -> rotations.

Plain Python + torch + numpy + librosa; never imports bpy. Used by the Blender add-on, the command
line (``python -m engine``) and the training package.
"""

__version__ = "0.1.0"
