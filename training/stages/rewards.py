"""Per-token rewards of Bailando's actor-critic stage (docs/REFERENCE.md §4.2-4.3).

Beat-align reward, one value per 8-frame token:

* motion beat flag: a motion beat (``training.metrics.beats.motion_beats``: minima of the sigma-5
  smoothed mean joint speed) falls in the token's 8 frames;
* music beat flag: a music beat (column 53 of the 60 fps features) falls in the token's 8 frames.

``released`` form (the released code): ``(music * motion - 0.5) * 10``: +5 when both beats fall in the
token, -5 otherwise (so every token without a music beat is punished too).
``paper`` form (the paper, the code's two commented lines): motion flags of tokens without a music
beat become 1 and the music flags all become 1, so the reward is -5 only where a music beat has no
motion beat, +5 everywhere else.

Speed reward (ours): per token, how far (as a log ratio) the mean joint speed of the 2 s around it
lies outside a band around the training takes' speed of the style danced; 0 inside the band. The
decoded codes play moves slower than they were captured and the styles with little data dance slower
than their takes (assets/MODEL_CARD.md); the band leaves a dance free to slow down and speed up.

Half-body consistency reward: the upper body's facing (normal of the collars) should agree with the
lower body's (normal of the knees); per token the worst frame's cosine, with every non-negative cosine
counting as 1. The official code signs the lower normal with the *upper* body's sign (a bug that does
not matter at its rate 0); here each half is signed by its own forward cue (head for the upper body,
toes for the lower body), which is what the unused ``down_direct`` variable was for.
"""

from __future__ import annotations

import numpy as np

from engine.clock import FRAMES_PER_TOKEN, MOTION_FPS
from training.metrics.beats import motion_beats
from training.metrics.physical import frame_speeds

REWARD_SCALE = 10.0


def token_flags(frames: np.ndarray, n_tokens: int, frames_per_token: int = FRAMES_PER_TOKEN) -> np.ndarray:
    """(n_tokens,) float: 1 where any of ``frames`` falls in the token's frames [8k, 8k + 8)."""
    frames = np.asarray(frames, dtype=np.int64).reshape(-1)
    frames = frames[(frames >= 0) & (frames < n_tokens * frames_per_token)]
    flags = np.zeros(n_tokens, dtype=np.float32)
    flags[frames // frames_per_token] = 1.0
    return flags


def beat_align_reward(joints: np.ndarray, music_beats: np.ndarray, form: str = "released",
                      false_beat_penalty: float = 0.5) -> np.ndarray:
    """Beat-align reward per token for a motion (T, 24, 3) at 60 fps and music beat frames of the same clock.

    Returns (T // 8,) float32 values: in {-5, +5} for the released and paper forms; in
    {-5, -5 * false_beat_penalty, 0, +5} for the balanced form.
    """
    n_tokens = len(joints) // FRAMES_PER_TOKEN
    dance = token_flags(motion_beats(joints), n_tokens)
    music = token_flags(music_beats, n_tokens)
    if form == "balanced":
        hit_or_miss = music * (2.0 * dance - 1.0)  # +1 hit, -1 miss, 0 without a music beat
        false_beat = (1.0 - music) * dance
        return ((hit_or_miss - false_beat_penalty * false_beat) * REWARD_SCALE / 2).astype(np.float32)
    if form == "paper":
        dance = np.where(music == 0, 1.0, dance)
        music = np.ones_like(music)
    elif form != "released":
        raise ValueError(f"unknown reward form {form!r}; use 'released', 'paper' or 'balanced'")
    return ((music * dance - 0.5) * REWARD_SCALE).astype(np.float32)


def speed_reward(joints: np.ndarray, target: float, band: tuple[float, float] = (0.9, 1.25),
                 seconds: float = 2.0) -> np.ndarray:
    """Per token (T // 8,) float32, <= 0: minus the log ratio by which the mean joint speed of the
    ``seconds`` around the token (inside the motion) falls below ``band[0]`` x ``target`` or rises above
    ``band[1]`` x ``target``; 0 inside. ``joints`` (T, 24, 3) at 60 fps, root included."""
    speeds = frame_speeds(joints, MOTION_FPS)  # (T-1,) m/s
    n_tokens = len(joints) // FRAMES_PER_TOKEN
    csum = np.concatenate([[0.0], np.cumsum(speeds, dtype=np.float64)])
    half = int(round(seconds * MOTION_FPS / 2))
    centre = np.arange(n_tokens) * FRAMES_PER_TOKEN + FRAMES_PER_TOKEN // 2
    lo, hi = np.clip(centre - half, 0, len(speeds) - 1), np.clip(centre + half, 1, len(speeds))
    local = (csum[hi] - csum[lo]) / (hi - lo)  # mean speed of the transitions around each token
    ratio = np.maximum(local, 1e-6) / target
    below = np.maximum(0.0, np.log(band[0] / ratio))
    above = np.maximum(0.0, np.log(ratio / band[1]))
    return (-(below + above)).astype(np.float32)


def _facing(a: np.ndarray, b: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Horizontal unit normal of the plane spanned by a, b (T, 3), signed to agree with ``forward``."""
    n = np.cross(a, b)
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)
    sign = np.where((n * forward).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    n = n * sign
    n[:, 1] = 0.0  # only the facing around the vertical axis matters
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)


def half_body_reward(joints: np.ndarray) -> np.ndarray:
    """Half-body consistency per token (T // 8,): 1 when both halves face the same way, else the cosine."""
    p = np.asarray(joints, dtype=np.float64)
    p = p - p[:, :1]  # root-relative, as the decoded poses are
    upper = _facing(p[:, 14], p[:, 13], p[:, 15] - p[:, 12])  # collars, signed by the head
    lower = _facing(p[:, 4], p[:, 5], (p[:, 10] - p[:, 7]) + (p[:, 11] - p[:, 8]))  # knees, by the toes
    cosine = (upper * lower).sum(-1)  # (T,)
    n_tokens = len(p) // FRAMES_PER_TOKEN
    worst = cosine[: n_tokens * FRAMES_PER_TOKEN].reshape(n_tokens, FRAMES_PER_TOKEN).min(axis=1)
    return np.where(worst >= 0, 1.0, worst).astype(np.float32)


def token_rewards(joints: np.ndarray, music_beats: np.ndarray, form: str = "released",
                  half_body_rate: float = 0.0, false_beat_penalty: float = 0.5, speed_rate: float = 0.0,
                  speed_target: float | None = None, speed_band: tuple[float, float] = (0.9, 1.25)) -> np.ndarray:
    """Beat-align reward plus ``half_body_rate`` x half-body consistency plus ``speed_rate`` x the speed
    reward against ``speed_target`` (m/s), per token (T // 8,)."""
    reward = beat_align_reward(joints, music_beats, form, false_beat_penalty)
    if half_body_rate:
        reward = reward + np.float32(half_body_rate) * half_body_reward(joints)
    if speed_rate:
        if speed_target is None:
            raise ValueError("a speed reward needs the speed target (m/s)")
        reward = reward + np.float32(speed_rate) * speed_reward(joints, speed_target, speed_band)
    return reward
