"""Training configs: one YAML file per stage, read into dataclasses with errors that name the bad key.

A config has these sections (every key optional unless a stage needs it; defaults are the paper's)::

    stage: vqvae                 # vqvae | root | gpt | actor-critic | duet | duet-rl (must match the command)
    run_dir: runs/paper_vqvae    # where checkpoint.pt, metrics.csv and loss.png go
    batch_size: 32
    epochs: 500                  # optional: sets loop.steps from the number of training windows
    milestone_epochs: [100, 200] # optional: sets optim.milestones the same way
    data:   {...}                # training.data.DataConfig (sources, window, stride, cache)
    vqvae:  {...}                # engine.models.vqvae.VQVAEConfig
    gpt:    {...}                # engine.models.gpt.GPTConfig
    loop:   {...}                # training.trainer.LoopConfig (steps, log/checkpoint period, seed, amp)
    optim:  {...}                # training.trainer.OptimConfig (Adam lr/betas, milestones, gamma)
    init:   {vqvae_run, gpt_run} # run folders the later stages start from
    music:  {...}                # MusicConfig: feature mode, caches, accompaniment of silent motion
    actor_critic: {...}          # ActorCriticConfig: songs, reward form and weights, iterations
    follower: {...}              # engine.models.follower.FollowerConfig (duet stage)
    duet:   {...}                # DuetConfig: the couples, held-out takes, copies, music or not
    duet_rl: {...}               # DuetRLConfig: the follower's RL phase (episodes, reward credit, KL anchor)

Relative paths (data sources, run folders, caches, songs) are resolved against the repository root,
so ``../shared/data/...`` works from any working directory. ``--set section.key=value`` on the command
line overrides one value (parsed as YAML: ``--set loop.steps=10``, ``--set data.bvh_paths=[a,b]``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import DanceError
from engine.models.follower import FollowerConfig
from engine.models.gpt import GPTConfig
from engine.models.vqvae import VQVAEConfig
from training.data.sources import DataConfig
from training.errors import ConfigError
from training.trainer import LoopConfig, OptimConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("vqvae", "root", "decoder", "gpt", "actor-critic", "duet", "duet-rl")
REWARD_FORMS = ("released", "paper", "balanced")




@dataclass
class InitConfig:
    """Run folders a stage starts from (their checkpoint.pt)."""

    vqvae_run: str | None = None  # root: the step-1 run; gpt / actor-critic: the root run (or step 1)
    gpt_run: str | None = None  # actor-critic: the GPT run
    model_dir: str | None = None  # duet: an engine model folder whose VQ-VAE (and music scaling) it uses
    duet_run: str | None = None  # duet-rl: the duet run whose follower it fine-tunes


@dataclass
class MusicConfig:
    """Music for the GPT and actor-critic stages."""

    mode: str = "full"  # feature mode of the 7.5 fps features ("full": live rhythm columns)
    feature_cache_dir: str | None = None  # engine.audio feature cache (None: its default folder)
    accompaniment: bool = True  # synthesise a beat-fitted track for motion without music
    accompaniment_dir: str | None = "runs/accompaniment"  # cache of the synthesised tracks
    # GPT stage: standardise each music column with the training windows' mean and std (stored with the
    # model; the engine applies them). False feeds the raw features, as the official code does.
    normalise: bool = True


@dataclass
class ActorCriticConfig:
    """Bailando's on-policy fine-tuning (docs/REFERENCE.md §4)."""

    songs: list[str] = field(default_factory=list)  # audio files and/or folders of audio files
    reward: str = "released"  # "released": (music*motion - 0.5)*10; "paper": penalise missed music beats;
    #                           "balanced": reward hits, penalise misses and motion beats off the music
    false_beat_penalty: float = 0.5  # balanced form: a motion beat without a music beat costs this x 5
    kl_weight: float = 0.0  # actor loss + kl_weight x KL(GPT before fine-tuning || actor) per token (0: off)
    half_body_rate: float = 0.0  # weight of the half-body consistency reward (official: 0)
    start_codes: tuple[int, int] | None = (423, 12)  # first (up, down) token; None: the gpt run's
    actor_iters: int = 5  # alternate: this many actor steps, then critic_iters critic steps
    critic_iters: int = 5
    gamma: float = 1.0  # TD discount
    rollout_every: int | None = None  # steps between fresh on-policy rollouts (None: one epoch of windows)
    rollouts_per_song: int = 1  # dances per song and rollout
    rollout_temperature: float | None = None  # None: greedy rollouts (official); else sample at this temperature
    # rollouts hold one code pair at most this many tokens, as the engine decodes (None: no limit, official)
    rollout_max_repeat: int | None = None
    max_tokens: int | None = None  # cut songs to this many tokens (None: whole songs)
    exact_rollout: bool = False  # official sliding window instead of the cached fast sampler
    # Styles the rollouts dance in ("any" and/or the GPT run's style names; ours): rollouts_per_song
    # dances per song in each, from the GPT run's start for that style, steered with
    # rollout_style_guidance as the engine steers it (1: the style's own logits).
    rollout_styles: list[str] = field(default_factory=lambda: ["any"])
    rollout_style_guidance: float = 1.0
    # Speed reward (ours, 0: off): per token, -speed_reward x how far (log ratio) the mean joint speed of
    # the 2 s around it lies outside speed_band x the training takes' speed of the rollout's style.
    speed_reward: float = 0.0
    speed_band: tuple[float, float] = (0.9, 1.25)
    speed_styles: list[str] | None = None  # the rollout styles paid the speed reward (None: all of them)
    # What learns: "head" (official: the actor's upper blocks, gpt_head) or "styles" (ours: only the
    # style embedding's rows of the rollout styles other than "any"; every other style dances as before)
    tune: str = "head"


@dataclass
class DuetConfig:
    """The duet stage's couples (training.data.duet)."""

    duet_dir: str = "../shared/data/cmu_salsa_duet"
    # Takes no stage may see: the default model held salsa take 11 (both dancers) out of every stage.
    held_out: list[str] = field(default_factory=lambda: ["cmu_salsa_11"])
    mirror: bool = True  # + the mirror image of each training couple
    rotations_deg: list[float] = field(default_factory=lambda: [90.0, 180.0, 270.0])  # + turned copies
    # Condition on music synthesised on the leader's motion beats (engine.accompaniment); false: none
    # (zero features), to measure what the music adds.
    music: bool = True
    # Training takes kept out of training and scored at every log step (validation cross-entropy in
    # metrics.csv): where the follower starts to memorise. Never a held-out take.
    validation: list[str] = field(default_factory=list)


@dataclass
class DuetRLConfig:
    """The follower's RL phase (training.stages.duet_rl): episodes on solo leaders it never danced with,
    rewarded only for feet that agree with where it places itself."""

    episode_tokens: int = 30  # follower steps per episode (the start step + block_size actions at most)
    temperature: float = 1.0  # episodes are sampled from the policy at this temperature
    group: int = 4  # episodes per leader stretch (batch_size / group stretches): each other's baseline
    credit_decay: float = 0.5  # action k is credited with sum_j decay^|j - k| x reward_j
    kl_weight: float = 0.1  # + kl_weight x KL(the duet run's follower || policy) per action (0: off)


@dataclass
class TrainConfig:
    stage: str
    run_dir: str
    batch_size: int = 32
    epochs: float | None = None
    milestone_epochs: list[float] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    gpt: GPTConfig = field(default_factory=GPTConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    init: InitConfig = field(default_factory=InitConfig)
    music: MusicConfig = field(default_factory=MusicConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    follower: FollowerConfig = field(default_factory=FollowerConfig)
    duet: DuetConfig = field(default_factory=DuetConfig)
    duet_rl: DuetRLConfig = field(default_factory=DuetRLConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def defaults_dict(self) -> dict[str, Any]:
        """Every setting at its default for this stage and run folder, paths resolved as ``load_config``
        resolves them: what a run saved before a setting existed ran with."""
        defaults = TrainConfig(stage=self.stage, run_dir=self.run_dir)
        _resolve_paths(defaults)
        return defaults.to_dict()

    def apply_epochs(self, num_windows: int) -> None:
        """Turn ``epochs`` / ``milestone_epochs`` into step counts for ``num_windows`` training windows."""
        per_epoch = max(1, -(-num_windows // self.batch_size))  # ceil
        if self.epochs is not None:
            self.loop.steps = max(1, round(self.epochs * per_epoch))
        if self.milestone_epochs:
            self.optim.milestones = [max(1, round(e * per_epoch)) for e in self.milestone_epochs]


# --- paths ----------------------------------------------------------------------------------------------
def resolve_path(path: str | Path | None) -> Path | None:
    """A config path: ``~`` expanded, relative paths taken from the repository root."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


_DATA_PATHS = ("aistpp_root", "aistpp_music_dir", "smpl_model_dir", "cache_dir")
_DATA_PATH_LISTS = ("bailando_json_dirs", "bvh_paths", "aistpp_csv_dirs")


def _resolve_paths(cfg: TrainConfig) -> None:
    for name in _DATA_PATHS:
        value = getattr(cfg.data, name)
        if value is not None:
            setattr(cfg.data, name, str(resolve_path(value)))
    for name in _DATA_PATH_LISTS:
        setattr(cfg.data, name, [str(resolve_path(p)) for p in getattr(cfg.data, name)])
    cfg.run_dir = str(resolve_path(cfg.run_dir))
    for name in ("vqvae_run", "gpt_run", "model_dir", "duet_run"):
        value = getattr(cfg.init, name)
        if value is not None:
            setattr(cfg.init, name, str(resolve_path(value)))
    for name in ("feature_cache_dir", "accompaniment_dir"):
        value = getattr(cfg.music, name)
        if value is not None:
            setattr(cfg.music, name, str(resolve_path(value)))
    cfg.actor_critic.songs = [str(resolve_path(p)) for p in cfg.actor_critic.songs]
    cfg.duet.duet_dir = str(resolve_path(cfg.duet.duet_dir))


# --- dataclass building with type checks ------------------------------------------------------------
def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (so the dump is plain YAML / checkpoint-safe)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the annotated type ``hint`` (int -> float allowed), or ConfigError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: may not be empty (null)")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of settings, got {value!r}")
        return build_dataclass(hint, value, where)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)} ({value!r})")
            return tuple(_check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads exponents without a dot ("1e-5") as text
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    return value


def build_dataclass(cls: type, values: Mapping[str, Any], where: str = "config") -> Any:
    """``cls(**values)`` with every key known and every value of its annotated type."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {known}")
    kwargs = {k: _check_value(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"{where}: {exc}") from exc
    except (ValueError, DanceError) as exc:  # the dataclass's own checks (e.g. n_embd % n_head)
        raise ConfigError(f"{where}: {exc}") from exc


def _validate(cfg: TrainConfig) -> None:
    if cfg.stage not in STAGES:
        raise ConfigError(f"stage must be one of {list(STAGES)}, got {cfg.stage!r}")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.loop.steps < 1:
        raise ConfigError(f"loop.steps must be at least 1, got {cfg.loop.steps}")
    if cfg.loop.amp not in ("bf16", "fp16", "off"):
        raise ConfigError(f"loop.amp must be bf16, fp16 or off, got {cfg.loop.amp!r}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {cfg.optim.lr}")
    if cfg.music.mode not in ("official", "full"):
        raise ConfigError(f"music.mode must be 'official' or 'full', got {cfg.music.mode!r}")
    ac = cfg.actor_critic
    if ac.reward not in REWARD_FORMS:
        raise ConfigError(f"actor_critic.reward must be one of {list(REWARD_FORMS)}, got {ac.reward!r}")
    if ac.rollouts_per_song < 1 or (ac.rollout_temperature is not None and not ac.rollout_temperature > 0):
        raise ConfigError("actor_critic.rollouts_per_song must be at least 1 and rollout_temperature positive (or null)")
    if ac.rollout_max_repeat is not None and ac.rollout_max_repeat < 1:
        raise ConfigError("actor_critic.rollout_max_repeat must be at least 1 (or null for no limit)")
    if ac.false_beat_penalty < 0 or ac.kl_weight < 0 or ac.speed_reward < 0:
        raise ConfigError("actor_critic.false_beat_penalty, kl_weight and speed_reward must not be negative")
    if not ac.rollout_styles or not ac.rollout_style_guidance > 0:
        raise ConfigError("actor_critic.rollout_styles must name at least one style and rollout_style_guidance "
                          "must be positive")
    if ac.tune not in ("head", "styles"):
        raise ConfigError(f"actor_critic.tune must be 'head' or 'styles', got {ac.tune!r}")
    if len(ac.speed_band) != 2 or not 0 < ac.speed_band[0] <= ac.speed_band[1]:
        raise ConfigError(f"actor_critic.speed_band must be [low, high] with 0 < low <= high, got {ac.speed_band}")
    if ac.actor_iters < 1 or ac.critic_iters < 1 or (ac.rollout_every is not None and ac.rollout_every < 1):
        raise ConfigError("actor_critic.actor_iters, critic_iters and rollout_every must be at least 1")
    rl = cfg.duet_rl
    if rl.episode_tokens < 2 or not (rl.temperature > 0 and 0 <= rl.credit_decay <= 1 and rl.kl_weight >= 0):
        raise ConfigError("duet_rl.episode_tokens must be at least 2, temperature positive, credit_decay within "
                          "0..1 and kl_weight not negative")
    if cfg.stage == "duet-rl" and (rl.group < 2 or cfg.batch_size % rl.group):
        raise ConfigError(f"duet_rl.group ({rl.group}) must be at least 2 and divide batch_size ({cfg.batch_size}): "
                          "the episodes of one leader stretch are each other's baseline")
    if cfg.data.window % 8 != 0:
        raise ConfigError(f"data.window must be a multiple of 8 frames (one token), got {cfg.data.window}")
    if cfg.stage in ("gpt", "actor-critic") and cfg.data.window // 8 > cfg.gpt.block_size + 1:
        raise ConfigError(f"data.window {cfg.data.window} frames is {cfg.data.window // 8} tokens; the GPT "
                          f"trains on block_size + 1 = {cfg.gpt.block_size + 1} tokens at most")


# --- loading -------------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. loop.steps=100), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from exc
    return [part.strip() for part in key.split(".")], value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return raw


def config_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """A validated TrainConfig (paths resolved) from a plain mapping plus ``--set`` overrides."""
    data = apply_overrides(_deep_copy(raw), overrides)
    cfg: TrainConfig = build_dataclass(TrainConfig, data, "config")
    _validate(cfg)
    _resolve_paths(cfg)
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (see training/configs/ for examples)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        return config_from_dict(raw, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
