"""Song in, dance out: the ``Choreographer`` ties features, GPT sampling, decoding and rotations together.

    features (N x 438 at 7.5 fps) --GPT--> codes_up, codes_down (N tokens)
        --VQ-VAE decoders--> root velocity + root-relative joints (8N frames at 60 fps)
        --integrate root--> world joints --ground feet / lock feet / beat sync / resample--> solve rotations --> Dance

Every consumer (exporters, the Blender add-on, evaluation) takes the returned ``Dance``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .audio import MusicFeatures, extract_features
from .beats import BeatSyncOptions, sync_to_beats
from .checkpoint import ANY_STYLE, DanceModel, check_device, load_model
from .clock import BEAT_FPS, MOTION_FPS
from .dance import Dance
from .errors import Cancelled, InvalidOptionError
from .joint_rotations import solve_rotations
from .models.vqvae import integrate_root
from .postprocess import ground_feet, lock_feet, plant_feet, resample_joints
from .sampling import (
    APPROXIMATIONS,
    SamplingOptions,
    approximate_gpt,
    can_batch,
    sample_codes,
    sample_codes_batch,
)
from .skeleton import LOWER_JOINTS, UPPER_JOINTS, bone_directions, check_joints
from .threads import thread_count, thread_counts, torch_threads

# progress(fraction in [0, 1], message)
ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

SUPPORTED_FPS = (60.0, 30.0, 24.0)

# Share of the progress bar given to each phase (the GPT dominates on CPU).
_PHASES = {"features": (0.0, 0.10), "gpt": (0.10, 0.90), "decode": (0.90, 0.95), "rotations": (0.95, 1.0)}


@dataclass
class GenerateOptions:
    """What a user can choose for one generation.

    style:       the dance style the GPT is asked for: "any" or one of the model's ``config.styles``.
    start_codes: (up, down) codes of the first token; None takes the style's start pair (or the model's).
    sampling:    greedy (the official sampler) or temperature / top-k with a seed, exact or fast; what
                 is left open (None) is the model's default decoding for the style
                 (``ModelConfig.decoding_for``); by
                 default no code pair is held longer than 2 s (``SamplingOptions.max_repeat``).
    fps:         output frame rate: 60 (native), 30 or 24 (resampled).
    beat_sync:   re-time the dance so its moves land on the song's beats (``engine.beats``); None leaves
                 the model's timing. The poses and path are the model's either way.
    ground:      put the feet on the floor (removes the height drift of integrated root velocity).
    lock_feet:   keep planted feet from sliding: the body moves over the planted foot
                 (``postprocess.lock_feet``), then each foot stays on its spot while planted and steps
                 between spots, its leg bent to reach (``postprocess.plant_feet``); needs ``ground``: a
                 planted foot is found by its height above the floor.
    rotations:   solve local joint rotations (needed for BVH/FBX and rigs).
    precision:   "float32" (exact), or an approximate GPT ("bfloat16", "int8"): faster, but the tokens
                 may differ from the float32 model's. (``sampling.draft`` is the exact way to use one.)
    threads:     torch threads for the model; None chooses from the model's size and the free cores
                 (``engine.threads``).
    reserve_cores: cores the thread policy leaves to the host program (the add-on leaves one to Blender).
    """

    style: str = ANY_STYLE
    start_codes: tuple[int, int] | None = None
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    fps: float = MOTION_FPS
    beat_sync: BeatSyncOptions | None = field(default_factory=BeatSyncOptions)
    ground: bool = True
    lock_feet: bool = True
    rotations: bool = True
    precision: str = "float32"
    threads: int | None = None
    reserve_cores: int = 0


def check_fps(fps: float) -> None:
    """Refuse an output frame rate the engine does not make (``SUPPORTED_FPS``)."""
    if float(fps) not in SUPPORTED_FPS:
        raise InvalidOptionError(f"fps must be one of {', '.join(str(int(f)) for f in SUPPORTED_FPS)}, got {fps}")


def _with_rotations(dance: Dance, timings: dict[str, float], progress: ProgressFn | None) -> Dance:
    """The dance with its joint rotations solved (timed into ``timings``)."""
    t0 = time.perf_counter()
    _phase(progress, "rotations", 0.0, "Solving joint rotations")
    solution = solve_rotations(dance.joints)
    timings["rotations_s"] = time.perf_counter() - t0
    return dance.replace(rotations=solution.rotations, translation=solution.translation,
                         rest_joints=solution.rest_joints)


def _phase(progress: ProgressFn | None, name: str, inner: float, message: str) -> None:
    if progress is not None:
        lo, hi = _PHASES[name]
        progress(lo + (hi - lo) * min(max(inner, 0.0), 1.0), message)


def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("generation cancelled; nothing was written")


# A bone is indexed by its child joint (row j of bone_directions runs from PARENTS[j] to j).
_LOWER_BONES = LOWER_JOINTS[LOWER_JOINTS > 0]  # the root has no bone


class Choreographer:
    """A loaded model ready to dance: ``Choreographer(model_dir).generate("song.ogg")``."""

    def __init__(self, model: DanceModel | str | Path, device: str | torch.device = "cpu"):
        self.device = check_device(device)
        self.model = load_model(model, device=self.device) if isinstance(model, (str, Path)) else model
        self.model.vqvae.to(self.device).eval()
        self.model.gpt.to(self.device).eval()
        self._approximate: dict[str, torch.nn.Module] = {}  # precision -> approximate GPT copy
        self._code_directions: tuple[np.ndarray, np.ndarray] | None = None  # see _code_bone_directions

    def gpt_for(self, precision: str) -> torch.nn.Module:
        """The float32 GPT, or an approximate copy of it (made once, then kept)."""
        if precision == "float32":
            return self.model.gpt
        if precision not in APPROXIMATIONS:
            raise InvalidOptionError(f"precision must be float32 or one of {APPROXIMATIONS}, got {precision!r}")
        if precision not in self._approximate:
            self._approximate[precision] = approximate_gpt(self.model.gpt, precision)
        return self._approximate[precision]

    # --- the pieces -----------------------------------------------------------------------------
    @property
    def vocab_sizes(self) -> tuple[int, int]:
        cfg = self.model.config.gpt
        return cfg.vocab_size_up, cfg.vocab_size_down

    def check_codes(self, up: int, down: int) -> tuple[int, int]:
        n_up, n_down = self.vocab_sizes
        if not (0 <= int(up) < n_up) or not (0 <= int(down) < n_down):
            raise InvalidOptionError(
                f"start codes ({up}, {down}) are out of range: upper must be 0..{n_up - 1}, "
                f"lower 0..{n_down - 1}"
            )
        return int(up), int(down)

    def check_options(self, options: GenerateOptions) -> tuple[int, int]:
        """Check every option against this model before any work (fps, sampling, beat sync, precision,
        style, start codes); returns the start codes. Raises ``InvalidOptionError`` naming the bad one."""
        check_fps(options.fps)
        options.sampling.check()
        sampling = options.sampling.resolved(self.model.config.decoding_for(options.style))
        sampling.check()
        if sampling.draft is not None and not sampling.greedy:
            raise InvalidOptionError("a draft model checks greedy tokens, and this dance is sampled (the model's "
                                     "default decoding, or a temperature/seed): ask for greedy decoding too")
        if options.beat_sync is not None:
            options.beat_sync.check()
        if options.threads is not None and not (isinstance(options.threads, int) and options.threads >= 1):
            raise InvalidOptionError(f"threads must be a whole number of at least 1, got {options.threads}")
        if options.precision != "float32" and options.precision not in APPROXIMATIONS:
            raise InvalidOptionError(f"precision must be float32 or one of {APPROXIMATIONS}, got {options.precision!r}")
        self.model.config.style_index(options.style)
        return self.check_codes(*(options.start_codes or self.model.config.start_for(options.style)))

    def features(self, song: str | Path, progress: ProgressFn | None = None) -> MusicFeatures:
        def audio_progress(fraction: float, message: str) -> None:
            _phase(progress, "features", fraction, message)

        return extract_features(song, mode=self.model.config.feature_mode, with_beats=True,
                                progress=audio_progress)

    @torch.inference_mode()
    def decode(self, codes_up: np.ndarray, codes_down: np.ndarray) -> np.ndarray:
        """Codes (N,) -> world joints (8N, 24, 3) at 60 fps, root integrated from the origin."""
        up = torch.as_tensor(np.asarray(codes_up), dtype=torch.long, device=self.device)[None]
        down = torch.as_tensor(np.asarray(codes_down), dtype=torch.long, device=self.device)[None]
        decoded = self.model.vqvae.decode(up, down)  # (1, 8N, 72)
        return integrate_root(decoded)[0].float().cpu().numpy()

    @torch.inference_mode()
    def preview_pose(self, up: int, down: int) -> np.ndarray:
        """The pose (24, 3) a code pair stands for: the middle frame of the pair held for 3 tokens.

        Holding the pair for a few tokens keeps the convolutional decoder away from its edges.
        """
        up, down = self.check_codes(up, down)
        decoded = self.model.vqvae.decode(
            torch.full((1, 3), up, dtype=torch.long, device=self.device),
            torch.full((1, 3), down, dtype=torch.long, device=self.device),
        )  # (1, 24, 72)
        frame = decoded[0, decoded.shape[1] // 2].float().cpu().numpy().reshape(24, 3)
        frame[0] = 0.0  # channels 0-2 hold the root velocity; the preview stands at the origin
        return frame

    @torch.inference_mode()
    def _code_bone_directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Bone directions of the preview pose of every upper and every lower code: ((Vu, 24, 3), (Vd, 24, 3)).

        The two halves decode independently, so a pair's preview is the upper joints of its upper
        code's row and the lower joints of its lower code's row. Built once per model (one batched
        decode of every code held for 3 tokens), then kept.
        """
        if self._code_directions is None:
            n_up, n_down = self.vocab_sizes
            n = max(n_up, n_down)
            index = torch.arange(n, device=self.device)
            decoded = self.model.vqvae.decode(
                (index % n_up)[:, None].expand(n, 3), (index % n_down)[:, None].expand(n, 3)
            )  # (n, 24, 72)
            frames = decoded[:, decoded.shape[1] // 2].float().cpu().numpy().reshape(n, 24, 3)
            frames[:, 0] = 0.0  # channels 0-2 hold the root velocity; previews stand at the origin
            self._code_directions = (bone_directions(frames[:n_up]), bone_directions(frames[:n_down]))
        return self._code_directions

    def encode_pose(self, joints: np.ndarray) -> tuple[int, int]:
        """The code pair whose preview is nearest to a pose (24, 3) (or the middle frame of (T, 24, 3)).

        Nearest half by half in bone directions (so an armature with other bone lengths, posed from a
        preview, finds that preview's codes again): the upper code minimises the squared distance of
        the unit directions of the bones ending in upper joints, the lower code those ending in
        lower joints. "From current pose" followed by a preview reproduces the pose as closely as the
        codebook can.
        """
        joints = np.asarray(joints, dtype=np.float64)
        if joints.ndim == 3 and joints.shape[0] > 0:
            joints = joints[joints.shape[0] // 2]
        if joints.shape != (24, 3) or not np.all(np.isfinite(joints)):
            raise InvalidOptionError(f"expected finite joints of shape (24, 3) or (T, 24, 3), got {joints.shape}")
        dirs_up, dirs_down = self._code_bone_directions()
        target = bone_directions(joints)  # (24, 3)
        err_up = np.sum((dirs_up[:, UPPER_JOINTS] - target[UPPER_JOINTS]) ** 2, axis=(1, 2))
        err_down = np.sum((dirs_down[:, _LOWER_BONES] - target[_LOWER_BONES]) ** 2, axis=(1, 2))
        return int(np.argmin(err_up)), int(np.argmin(err_down))

    # --- the whole path -------------------------------------------------------------------------
    def generate(
        self,
        song: str | Path,
        options: GenerateOptions | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        features: MusicFeatures | None = None,
    ) -> Dance:
        options = options or GenerateOptions()
        start = self.check_options(options)  # before the slow part
        threads = thread_count(self.model.config.gpt.n_embd, options.threads, options.reserve_cores)
        with torch_threads(threads):
            dance = self._generate(song, options, start, progress, cancel, features)
        dance.meta["threads"] = threads
        return dance

    def _generate(self, song: str | Path, options: GenerateOptions, start: tuple[int, int],
                  progress: ProgressFn | None, cancel: CancelFn | None, features: MusicFeatures | None) -> Dance:
        start_up, start_down = start
        gpt = self.gpt_for(options.precision)
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        _phase(progress, "features", 0.0, "Reading the song")
        feats = features if features is not None else self.features(song, progress)
        timings["features_s"] = time.perf_counter() - t0
        _check_cancel(cancel)

        music = self._music(feats)

        def gpt_progress(done: int, total: int) -> None:
            _phase(progress, "gpt", done / max(total, 1), f"Dancing: token {done}/{total}")

        t0 = time.perf_counter()
        sampling = self._sampling(options)
        codes_up, codes_down = sample_codes(gpt, start_up, start_down, music, sampling,
                                            progress=gpt_progress, cancel=cancel)
        timings["gpt_s"] = time.perf_counter() - t0
        _check_cancel(cancel)
        return self._dance_from_codes(song, options, feats, codes_up, codes_down, sampling, timings, progress,
                                      cancel)

    def _music(self, feats: MusicFeatures) -> torch.Tensor:
        # One token per 7.5 fps music frame: the start token stands at frame 0, and the GPT is
        # conditioned on the music of the token it predicts (frames 1..N-1).
        music = torch.as_tensor(feats.features[1:], dtype=torch.float32, device=self.device)
        return self.model.config.normalise_music(music)  # (N-1, 438), standardised as in training

    def _sampling(self, options: GenerateOptions) -> SamplingOptions:
        """The model's default decoding wherever the user left the choice open, then the style input."""
        return replace(options.sampling.resolved(self.model.config.decoding_for(options.style)),
                       style=self.model.config.style_index(options.style))

    def generate_many(
        self,
        song: str | Path,
        options_list: Sequence[GenerateOptions],
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        features: MusicFeatures | None = None,
    ) -> list[Dance]:
        """Several dances to one song (variations: seeds, temperatures, styles, start codes), the same
        dances ``generate`` makes one by one, token for token: the music is read once and the GPT decodes
        them all as one batch (``sample_codes_batch``) when their options allow it."""
        options_list = list(options_list)
        starts = [self.check_options(o) for o in options_list]  # every option set, before the slow part
        samplings = [self._sampling(o) for o in options_list]
        precisions = {o.precision for o in options_list}
        if len(options_list) < 2 or len(precisions) > 1 or not can_batch(samplings):
            feats = features if features is not None else self.features(song, progress)
            return [self.generate(song, o, progress, cancel, feats) for o in options_list]
        first = options_list[0]  # alone: each dance's own run; threads: the batch's GPT
        alone, threads = thread_counts(self.model.config.gpt.n_embd, first.threads, first.reserve_cores,
                                       dances=len(starts))
        with torch_threads(alone):
            t0 = time.perf_counter()
            _phase(progress, "features", 0.0, "Reading the song")
            feats = features if features is not None else self.features(song, progress)
            features_s = time.perf_counter() - t0
            _check_cancel(cancel)
            music = self._music(feats)

            def gpt_progress(done: int, total: int) -> None:
                _phase(progress, "gpt", done / max(total, 1), f"Dancing {len(starts)} variations: token {done}/{total}")

            t0 = time.perf_counter()
            with torch_threads(threads):
                codes = sample_codes_batch(self.gpt_for(precisions.pop()), starts, music, samplings,
                                           progress=gpt_progress, cancel=cancel, alone_threads=alone)
            gpt_s = time.perf_counter() - t0
            _check_cancel(cancel)
            dances = []  # decoded on each dance's own threads, as ``generate`` decodes it
            for options, (up, down), sampling in zip(options_list, codes, samplings):
                timings = {"features_s": features_s, "gpt_s": gpt_s, "gpt_batch": len(starts), "gpt_threads": threads}
                dance = self._dance_from_codes(song, options, feats, up, down, sampling, timings, progress, cancel)
                dance.meta["threads"] = alone
                dances.append(dance)
        return dances

    def accompany(
        self,
        leader: np.ndarray | Dance,
        song: str | Path | None = None,
        options: GenerateOptions | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> Dance:
        """A follower dancing with ``leader`` (world joints (T, 24, 3) at 60 fps, y-up metres, or a
        ``Dance``), in the leader's world and time: the model's follower GPT (``engine.duet``) hears
        ``song`` from the leader's frame 0, or without one the accompaniment synthesised on the leader's
        own beats (what it was trained with). ``options``: the decoding (``sampling``: the model's
        default where left open), ``fps``, ``rotations``, ``threads``, ``lock_feet`` (its feet planted,
        ``postprocess.plant_feet``); start codes, style and beat sync do not apply."""
        from .accompaniment import accompaniment_for_motion
        from .audio.cache import default_cache_dir
        from .duet import dance_codes, follower_joints, sample_follower, start_place

        options = options or GenerateOptions()
        follower = self.model.follower
        if follower is None:
            raise InvalidOptionError(f"the model {self.model.config.name!r} has no follower (duet) GPT; "
                                     "add one with 'python -m training add-follower'")
        check_fps(options.fps)
        if isinstance(leader, Dance):
            joints = leader.joints if leader.fps == MOTION_FPS else resample_joints(leader.joints, leader.fps,
                                                                                   MOTION_FPS)
        else:
            joints = np.asarray(leader)
        joints = check_joints(joints, "the leader's joints", min_frames=2 * 8)  # at least two tokens
        sampling = options.sampling.resolved(self.model.config.decoding)
        sampling.check()
        threads = thread_count(self.model.config.gpt.n_embd, options.threads, options.reserve_cores)
        timings: dict[str, float] = {}
        with torch_threads(threads):
            t0 = time.perf_counter()
            _phase(progress, "features", 0.0, "Reading the music")
            if song is not None:
                feats = self.features(song, progress)
                music_source = str(song)
            else:
                wav, _ = accompaniment_for_motion(joints, default_cache_dir().parent / "accompaniment", "leader")
                feats = extract_features(wav, mode=self.model.config.feature_mode, with_beats=True)
                music_source = "accompaniment on the leader's beats"
            timings["features_s"] = time.perf_counter() - t0
            _check_cancel(cancel)
            up_l, down_l = dance_codes(self.model.vqvae, joints)
            n = len(up_l)
            music = torch.as_tensor(feats.features[:n], dtype=torch.float32, device=self.device)
            if music.shape[0] < n:  # the song ends first: hold its last frame
                music = torch.cat([music, music[-1:].expand(n - music.shape[0], -1)])
            music = self.model.config.normalise_music(music)

            def gpt_progress(done: int, total: int) -> None:
                _phase(progress, "gpt", done / max(total, 1), f"Following the leader: step {done}/{total}")

            t0 = time.perf_counter()
            start = (*self.model.config.start_for(ANY_STYLE), start_place())
            up, down, rel = sample_follower(follower, up_l, down_l, music, start, sampling, gpt_progress, cancel)
            timings["gpt_s"] = time.perf_counter() - t0
            _check_cancel(cancel)
            t0 = time.perf_counter()
            _phase(progress, "decode", 0.0, "Placing the follower")
            follower_world = follower_joints(self.model.vqvae, up, down, rel, joints)
            if options.lock_feet:  # its place is reached by moving the body: the feet step there
                follower_world = plant_feet(follower_world, fps=MOTION_FPS)
            beats = np.asarray(feats.beats, dtype=np.int64)
            beats = beats[beats < follower_world.shape[0]]
            if float(options.fps) != MOTION_FPS:
                follower_world = resample_joints(follower_world, MOTION_FPS, options.fps)
                beats = np.unique(np.round(beats * options.fps / BEAT_FPS).astype(np.int64))
                beats = beats[beats < follower_world.shape[0]]
            timings["decode_s"] = time.perf_counter() - t0
            dance = Dance(
                joints=follower_world.astype(np.float32), fps=float(options.fps), codes_up=up, codes_down=down,
                music_beats=beats, song_path=None if song is None else str(song),
                meta={"model": self.model.config.name, "role": "follower", "music": music_source,
                      "sampling": asdict(sampling), "relative_position_codes": [int(c) for c in rel],
                      "leader_frames": int(len(joints)), "tokens": int(n)},
            )
            if options.rotations:
                dance = _with_rotations(dance, timings, progress)
        dance.meta["timings"] = timings
        dance.meta["threads"] = threads
        return dance

    def _dance_from_codes(self, song: str | Path, options: GenerateOptions, feats: MusicFeatures,
                          codes_up: np.ndarray, codes_down: np.ndarray, sampling: SamplingOptions,
                          timings: dict[str, float], progress: ProgressFn | None, cancel: CancelFn | None) -> Dance:
        """Codes -> joints, post-processing, rotations: the dance."""
        start_up, start_down = int(codes_up[0]), int(codes_down[0])
        n_steps = len(codes_up) - 1
        t0 = time.perf_counter()
        _phase(progress, "decode", 0.0, "Decoding poses")
        codes_up = np.asarray(codes_up, dtype=np.int64).reshape(-1)
        codes_down = np.asarray(codes_down, dtype=np.int64).reshape(-1)
        joints = self.decode(codes_up, codes_down)
        beats = np.asarray(feats.beats, dtype=np.int64)
        beats = beats[beats < joints.shape[0]]
        if options.ground and options.lock_feet:
            # before beat sync, which places speed minima that moving the body would move again; the lock
            # finds the planted foot by its height, so the feet go onto the floor first
            joints = lock_feet(ground_feet(joints, fps=MOTION_FPS))
        sync_summary = None
        if options.beat_sync is not None:
            synced = sync_to_beats(joints, beats, MOTION_FPS, options.beat_sync)
            joints, sync_summary = synced.joints, synced.summary
        if options.ground:  # (again) after the re-timing: the floor under the re-timed feet
            joints = ground_feet(joints, fps=MOTION_FPS)
            if options.lock_feet:  # last: re-timing keeps a pinned foot pinned, but not a new floor
                joints = plant_feet(joints, fps=MOTION_FPS)
        if float(options.fps) != MOTION_FPS:
            joints = resample_joints(joints, MOTION_FPS, options.fps)
            beats = np.unique(np.round(beats * options.fps / BEAT_FPS).astype(np.int64))
            beats = beats[beats < joints.shape[0]]
        timings["decode_s"] = time.perf_counter() - t0
        _check_cancel(cancel)

        dance = Dance(
            joints=joints.astype(np.float32),
            fps=float(options.fps),
            codes_up=codes_up,
            codes_down=codes_down,
            music_beats=beats,
            song_path=str(song),
            meta={
                "model": self.model.config.name,
                "feature_mode": self.model.config.feature_mode,
                "style": options.style,
                "start_codes": [start_up, start_down],
                "sampling": asdict(sampling),
                "precision": options.precision,
                "lock_feet": options.lock_feet,
                # the codes index the dance before beat sync re-timed it (8 frames a token at 60 fps)
                "beat_sync": None if options.beat_sync is None else {**asdict(options.beat_sync), **sync_summary},
                "tokens": int(n_steps + 1),
                "song_duration_s": float(feats.duration_s),
            },
        )
        if options.rotations:
            dance = _with_rotations(dance, timings, progress)
        dance.meta["timings"] = timings
        _phase(progress, "rotations", 1.0, "Done")
        return dance
