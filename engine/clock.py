"""The project's one clock, shared by the engine, the training package and the add-on.

Motion lives at 60 frames per second everywhere inside (the VQ-VAE's rate, the official AIST++ rate);
the VQ-VAE turns every 8 frames into one code, so the GPT runs at 7.5 tokens (code pairs) per second,
the rate of the music features it reads. Music beats are found at 60 frames per second (sr 30720,
hop 512), one beat frame per motion frame. Output may be resampled to 30 or 24 fps at the very end.
"""

from __future__ import annotations

MOTION_FPS = 60.0  # frames per second of motion inside the engine and the training data
FRAMES_PER_TOKEN = 8  # the VQ-VAE downsamples time by 2^3
TOKEN_FPS = MOTION_FPS / FRAMES_PER_TOKEN  # 7.5 code pairs (and music feature frames) per second
BEAT_FPS = 60  # music beat frames per second (sr 30720 / hop 512): one per motion frame
