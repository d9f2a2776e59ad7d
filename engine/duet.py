"""A follower for a leader's dance (the duet): codes from the follower GPT, then joints in the leader's world.

    leader joints (T, 24, 3) ─► VQ-VAE codes (N = T // 8) ─┐
    music per token (the song's, or the leader's own accompaniment) ─┤
                                                            └► sample_follower ─► follower up/down/rel codes
    follower codes ─► VQ-VAE decode (pose, height) + relative position (the pelvis on the floor around the
    leader, ``engine.relative_position``) ─► follower joints (T', 24, 3), feet on the floor

The GPT's input i is the follower's step i and the condition of step i + 1 with its look-ahead (the
leader's codes and the music of steps i + 1 .. i + 1 + lookahead, the leader's last step held past his
end), as the duet stage trains it (``training.stages.duet``); windows follow the solo sampler's rule
(``sampling.context_window``) with the key/value cache.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from .clock import FRAMES_PER_TOKEN, MOTION_FPS
from .errors import Cancelled, InvalidOptionError
from .models.follower import FollowerGPT
from .models.gpt import KVCache
from .models.vqvae import SepVQVAE, integrate_root
from .postprocess import ground_feet, move_limb_ends, smoothstep, true_runs
from .relative_position import DEFAULT_GRID, PolarGrid
from .sampling import (
    FAST_DEFAULT_SHIFT,
    CancelFn,
    ProgressFn,
    SamplingOptions,
    _check_logits,
    _pick,
    context_window,
    sampling_generator,
)
from .skeleton import ARMS, HAND_TIPS, check_joints

# Where a follower starts when nobody says: 0.7 m in front of the leader (the real couples' median
# distance is 0.57-0.75 m, training.data.duet).
START_DISTANCE_M = 0.7
# The follower's own steps are kept; its place around the leader is corrected over this time (seconds).
PLACEMENT_SMOOTH_S = 0.4
# Torsos (spine joints) of the two are kept at least this far apart (keep_apart).
MIN_TORSO_GAP_M = 0.25
TORSO_JOINTS = (3, 6, 9)  # spine1, spine2, spine3
# join_hands: a follower's hand within HOLD_REACH_M of a leader's hand for at least HOLD_MIN_S takes it
# (its hand joint HOLD_GAP_M from his: two palms), easing in and out over HOLD_FADE_S.
HOLD_REACH_M = 0.20
HOLD_MIN_S = 0.3
HOLD_GAP_M = 0.04
HOLD_FADE_S = 0.15


@torch.no_grad()
def dance_codes(vqvae: SepVQVAE, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A dance's codes (N,) up and down (N = frames // 8; the last partial token dropped)."""
    joints = check_joints(joints, "the leader's joints", min_frames=FRAMES_PER_TOKEN)
    frames = (len(joints) // FRAMES_PER_TOKEN) * FRAMES_PER_TOKEN
    rel = (joints[:frames] - joints[:frames, :1]).astype(np.float32).reshape(1, frames, 72)
    device = next(vqvae.parameters()).device
    up, down = vqvae.encode(torch.from_numpy(rel).to(device))
    return up[0].cpu().numpy(), down[0].cpu().numpy()


def start_place(grid: PolarGrid = DEFAULT_GRID) -> int:
    """The relative-position code of a follower ``START_DISTANCE_M`` straight in front of the leader."""
    ring = int(np.searchsorted(grid.radii, START_DISTANCE_M, side="right") - 1)
    return ring * grid.bearings  # sector 0: straight ahead


def sample_follower(
    follower: FollowerGPT,
    leader_up: np.ndarray,
    leader_down: np.ndarray,
    music: torch.Tensor,
    start: tuple[int, int, int],
    options: SamplingOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The follower's codes (N,) up, down and relative position for a leader's codes (N,) and the music
    per token (N, n_music), the follower's first step ``start``. ``options``: greedy, temperature, top_k,
    seed, shift (the window rule; cached decoding); other fields do not apply to a follower."""
    options = (options or SamplingOptions()).resolved()
    options.check()
    config = follower.config
    n = len(leader_up)
    if len(leader_down) != n or music.shape[0] != n:
        raise InvalidOptionError(f"the leader has {n} up, {len(leader_down)} down codes and {music.shape[0]} "
                                 "music rows: one of each per step")
    for name, code, vocab in zip(("up", "down", "relative position"), start,
                                 (config.vocab_size_up, config.vocab_size_down, config.n_relpos)):
        if not 0 <= int(code) < vocab:
            raise InvalidOptionError(f"the follower's start {name} code must be in 0..{vocab - 1}, got {code}")
    device = next(follower.parameters()).device
    hold = np.minimum(np.arange(n + config.lookahead), n - 1)  # the leader's last step held past his end
    lead_up = torch.as_tensor(np.asarray(leader_up)[hold], device=device)[None]  # (1, N + L)
    lead_down = torch.as_tensor(np.asarray(leader_down)[hold], device=device)[None]
    cond_music = music.to(device=device, dtype=torch.float32)[torch.as_tensor(hold, device=device)][None]
    codes = torch.empty(3, n, dtype=torch.long, device=device)  # up, down, rel
    codes[:, 0] = torch.tensor([int(c) for c in start], device=device)
    generator = sampling_generator(options)
    shift = options.shift if options.shift is not None else FAST_DEFAULT_SHIFT
    n_context, L = config.block_size - 1, config.lookahead
    cache: KVCache | None = None
    cache_start = -1
    follower.eval()
    with torch.inference_mode():
        for step in range(n - 1):
            if cancel is not None and cancel():
                raise Cancelled(f"the follower was cancelled after {step} of {n - 1} steps")
            start_i, length = context_window(step, n_context, shift)
            if cache is None or start_i != cache_start or cache.length != length - 1:
                cache, cache_start = KVCache(), start_i
                first = start_i
            else:
                first = step
            own = slice(first, step + 1)
            cond = slice(first + 1, step + 2 + L)
            logits = follower(codes[0, None, own], codes[1, None, own], codes[2, None, own],
                              lead_up[:, cond], lead_down[:, cond], cond_music[:, cond], cache)
            for k, lg in enumerate(logits):
                _check_logits(lg[0, -1])
                codes[k, step + 1] = _pick(lg[0, -1], options, generator)
            if progress is not None:
                progress(step + 1, n - 1)
    up, down, rel = codes.cpu().numpy()
    return up, down, rel


@torch.no_grad()
def decode_follower(vqvae: SepVQVAE, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The follower's dance as its codes decode it (8N, 24, 3), float64: its own steps and height, not
    yet placed."""
    device = next(vqvae.parameters()).device
    decoded = vqvae.decode(torch.as_tensor(up, device=device)[None], torch.as_tensor(down, device=device)[None])
    return integrate_root(decoded)[0].float().cpu().numpy().astype(np.float64)


def placement_drift(joints: np.ndarray, rel: np.ndarray, leader: np.ndarray,
                    grid: PolarGrid = DEFAULT_GRID) -> np.ndarray:
    """(T, 2) how far (x, z) the decoded follower ``joints`` (T, 24, 3) is moved on the floor on each frame
    to stand where its relative-position codes (one per token) put it around ``leader`` (held past his
    end). Its change from frame to frame is motion the follower's own steps did not make: what its feet
    would slide by (the duet's RL phase rewards keeping it small)."""
    frames = joints.shape[0]
    leader = check_joints(leader, "the leader's joints")
    leader = leader[np.minimum(np.arange(frames), len(leader) - 1)]
    place = np.repeat(np.asarray(rel), FRAMES_PER_TOKEN)[:frames]
    target = grid.decode(place, leader, MOTION_FPS)  # (T, 3), y = 0: where the codes put the pelvis
    # The decoded steps move the pelvis as the feet carry it; the codes say where it should be around
    # the leader. Forcing it there every frame would slide the planted feet (and jitter from bin to bin),
    # so the pelvis keeps its own motion and only the slow part of the difference is corrected.
    sigma = PLACEMENT_SMOOTH_S * MOTION_FPS
    drift = gaussian_filter1d((target - joints[:, 0])[:, [0, 2]], sigma, axis=0, mode="nearest")
    # Smoothing points that circle the leader (he turns, she goes round him) pulls them towards him: the
    # codes' 0.65 m became 0.55 m. So the distance is corrected on its own, along the line between them.
    centre = leader[:, 0, [0, 2]]
    away = joints[:, 0, [0, 2]] + drift - centre
    distance = np.linalg.norm(away, axis=1)
    wanted = np.linalg.norm(target[:, [0, 2]] - centre, axis=1)
    radial = gaussian_filter1d(wanted - distance, sigma, mode="nearest")
    return drift + radial[:, None] * away / np.maximum(distance, 1e-6)[:, None]


def follower_joints(vqvae: SepVQVAE, up: np.ndarray, down: np.ndarray, rel: np.ndarray, leader: np.ndarray,
                    grid: PolarGrid = DEFAULT_GRID, hold_hands: bool = True) -> np.ndarray:
    """The follower's world joints (8N, 24, 3) at 60 fps: the decoded dance (its own steps and height),
    its place on the floor kept around the leader where the relative-position codes (one per token) put
    it, corrected slowly (``placement_drift``); feet on the floor, torsos apart (``keep_apart``), and
    with ``hold_hands`` her hands that stay close to his taking them (``join_hands``)."""
    joints = decode_follower(vqvae, up, down)
    leader = check_joints(leader, "the leader's joints")
    leader = leader[np.minimum(np.arange(joints.shape[0]), len(leader) - 1)]
    drift = placement_drift(joints, rel, leader, grid)  # (8N, 2)
    joints[:, :, 0] += drift[:, None, 0]
    joints[:, :, 2] += drift[:, None, 1]
    apart = keep_apart(ground_feet(joints, fps=MOTION_FPS), leader)  # on its feet first: the gap is 3-D
    return join_hands(apart, leader) if hold_hands else apart


def keep_apart(follower: np.ndarray, leader: np.ndarray, gap_m: float = MIN_TORSO_GAP_M) -> np.ndarray:
    """The follower moved away from the leader on the floor wherever their torsos come closer than
    ``gap_m`` (bodies never pass through each other; the real couples' torsos stay 0.2 m apart in all
    but 2 % of frames), the push smoothed over 0.1 s and never pulling him closer."""
    torso = list(TORSO_JOINTS)
    window = int(0.1 * MOTION_FPS)
    out = follower.copy()
    for _ in range(4):  # a push along the pelvises' line widens the torsos' gap by at most its length
        gaps = np.linalg.norm(leader[:, torso][:, :, None] - out[:, torso][:, None], axis=-1).min(axis=(1, 2))
        deficit = np.clip(gap_m - gaps, 0.0, None)  # (T,) how much closer than allowed
        if not deficit.any():
            break
        away = (out[:, 0] - leader[:, 0])[:, [0, 2]]
        away /= np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-6)
        # a running maximum over the smoothing window first, so smoothing does not shave the peaks
        padded = np.pad(deficit, window, mode="edge")
        peak = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1).max(axis=1)
        push = gaussian_filter1d(peak, window / 2, mode="nearest")[:, None] * away  # (T, 2)
        out[:, :, 0] += push[:, None, 0]
        out[:, :, 2] += push[:, None, 1]
    return out


def join_hands(follower: np.ndarray, leader: np.ndarray, fps: float = MOTION_FPS) -> np.ndarray:
    """The follower's hands taking the leader's where they come close and stay close (T, 24, 3) -> same.

    Couple dancers hold hands; a generated follower reaches towards the leader's hands but stops a hand's
    breadth short, so the two seem to mime a hold. Wherever one of the follower's hands stays within
    ``HOLD_REACH_M`` of one of the leader's for at least ``HOLD_MIN_S`` (passing hands are left alone),
    her hand is brought to his (``HOLD_GAP_M`` apart, from the side it came from) by two-bone IK on her
    arm (shoulder fixed, bone lengths kept, the elbow bending as it bent), easing in and out over
    ``HOLD_FADE_S``; each of his hands takes at most one of hers at a time. Nothing else moves, and a
    hand out of the arm's reach gets as close as the straight arm allows."""
    follower = check_joints(follower, "the follower's joints")
    leader = check_joints(leader, "the leader's joints")
    n = len(follower)
    leader = leader[np.minimum(np.arange(n), len(leader) - 1)]
    mine, his = follower[:, HAND_TIPS], leader[:, HAND_TIPS]  # (T, 2, 3)
    gaps = np.linalg.norm(mine[:, :, None] - his[:, None], axis=-1)  # (T, her hand, his hand)
    nearest = gaps.argmin(axis=2)  # (T, 2)
    near = gaps.min(axis=2) < HOLD_REACH_M  # (T, 2)
    # his hand goes to the closer of her two hands where both reach for it
    same = near.all(axis=1) & (nearest[:, 0] == nearest[:, 1])
    closer_left = gaps[np.arange(n), 0, nearest[:, 0]] <= gaps[np.arange(n), 1, nearest[:, 1]]
    near[same, 1] &= ~closer_left[same]
    near[same, 0] &= closer_left[same]
    fade = max(1, int(round(HOLD_FADE_S * fps)))
    shift = np.zeros((n, 2, 3))
    for side in range(2):
        weight = np.zeros(n)
        for start, stop in true_runs(near[:, side], int(round(HOLD_MIN_S * fps))):
            frames = np.arange(max(0, start - fade), min(n, stop + fade))
            inside = np.clip(np.minimum(frames - (start - fade), (stop - 1 + fade) - frames) / fade, 0.0, 1.0)
            weight[frames] = np.maximum(weight[frames], smoothstep(inside))
        held = weight > 0
        if not held.any():
            continue
        other = his[np.arange(n), nearest[:, side]]  # (T, 3) his hand nearest hers
        away = mine[:, side] - other
        away /= np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-9)
        target = other + HOLD_GAP_M * away
        shift[held, side] = weight[held, None] * (target[held] - mine[held, side])
    return move_limb_ends(follower, ARMS, HAND_TIPS, shift, np.zeros((n, 3)))

