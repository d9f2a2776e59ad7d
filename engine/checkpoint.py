"""Our model format: one folder, no pickles, nothing executed on load.

    <model>/config.json        FORMAT_VERSION, name, description, source, feature_mode, fps,
                               default_start, and the VQ-VAE and GPT configs as plain dicts
    <model>/vqvae.safetensors  SepVQVAE state dict (incl. the codebook EMA statistics)
    <model>/gpt.safetensors    CrossCondGPT state dict (incl. the critic when it has one)

``save_model`` writes into a temporary folder beside the target and renames it into place, so a
failure never leaves a half-written model. ``load_model`` checks every name and shape against the
config before anything is loaded, and says which file is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .audio import FEATURE_MODES
from .errors import (
    CheckpointError,
    InvalidOptionError,
    MissingModelFileError,
    ModelNotFoundError,
    NonFiniteWeightsError,
    NotAModelFolderError,
    UnsupportedFormatError,
    WeightsMismatchError,
)
from .files import atomic_file
from .models.follower import FollowerConfig, FollowerGPT
from .models.gpt import CrossCondGPT, GPTConfig
from .models.vqvae import SepVQVAE, VQVAEConfig
from .sampling import DECODING_KEYS, SamplingOptions

FORMAT_VERSION = 1
FORMAT_NAME = "bailando-blender-model"  # marks a config.json as ours
CONFIG_FILE = "config.json"
VQVAE_FILE = "vqvae.safetensors"
GPT_FILE = "gpt.safetensors"
MODEL_FILES = (CONFIG_FILE, VQVAE_FILE, GPT_FILE)
FOLLOWER_FILE = "follower.safetensors"  # optional: the duet's follower GPT (config "follower")
ANY_STYLE = "any"  # the style of a dance that asks for none: the GPT's style input 0


def default_model_dir() -> Path:
    """``$DANCE_MODEL_DIR``, else the model shipped in ``assets/default_model`` (beside the engine package,
    in the repository and in the built extension alike)."""
    env = os.environ.get("DANCE_MODEL_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "assets" / "default_model"



@dataclass
class ModelConfig:
    name: str
    vqvae: VQVAEConfig
    gpt: GPTConfig
    feature_mode: str  # "official": rhythm columns zeroed as the released weights saw; "full": live
    fps: int = 60  # frame rate of the decoded motion
    default_start: tuple[int, int] = (423, 12)  # (up, down) start codes when the user gives none
    description: str = ""
    source: str = ""
    # Per-column standardisation of the music before the GPT sees it: (features - mean) / std, with the
    # training features' statistics. None = identity (official models: the released code feeds the raw
    # features). Without it a small GPT hears the MFCCs (std ~100) and all but ignores the rhythm columns.
    music_mean: list[float] | None = None
    music_std: list[float] | None = None
    # Style control: the names of the GPT's styles (style input 1 + position; 0 = "any"), one per
    # gpt.n_styles, and optionally a start pair per style (the style's most common first codes).
    styles: list[str] = field(default_factory=list)
    style_starts: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The decoding this model dances best with when the user asks for none (engine.sampling.DECODING_KEYS:
    # greedy, temperature, top_k, style_guidance); {} = the official greedy decoding.
    decoding: dict[str, object] = field(default_factory=dict)
    # Per style, what differs from ``decoding`` for a dance asked for that style (e.g. a higher temperature
    # for a style the GPT saw little of and dances too slowly; ``python -m training choose-start``).
    style_decoding: dict[str, dict[str, object]] = field(default_factory=dict)
    # The duet's follower GPT on this model's codes (engine.models.follower), when the folder has one.
    follower: FollowerConfig | None = None

    def __post_init__(self) -> None:
        if self.feature_mode not in FEATURE_MODES:
            raise CheckpointError(f"feature_mode must be one of {FEATURE_MODES}, got {self.feature_mode!r}")
        if (self.music_mean is None) != (self.music_std is None):
            raise CheckpointError("music_mean and music_std must be given together (or neither)")
        if self.music_mean is not None and self.music_std is not None:
            self.music_mean = [float(v) for v in self.music_mean]
            self.music_std = [float(v) for v in self.music_std]
            if len(self.music_mean) != len(self.music_std) or len(self.music_mean) != self.gpt.n_music:
                raise CheckpointError(f"music_mean / music_std must have {self.gpt.n_music} values each "
                                      f"(got {len(self.music_mean)} and {len(self.music_std)})")
            if not all(v > 0 and v < float("inf") for v in self.music_std):
                raise CheckpointError("music_std values must be positive and finite")
        up, down = (int(c) for c in self.default_start)
        if not (0 <= up < self.gpt.vocab_size_up and 0 <= down < self.gpt.vocab_size_down):
            raise CheckpointError(f"default_start {self.default_start} is outside the codebooks "
                                  f"({self.gpt.vocab_size_up}, {self.gpt.vocab_size_down})")
        self.default_start = (up, down)
        self.styles = [str(v) for v in self.styles]
        if len(self.styles) != self.gpt.n_styles:
            raise CheckpointError(f"the model config names {len(self.styles)} styles but its GPT has "
                                  f"{self.gpt.n_styles} (gpt.n_styles)")
        if len(set(self.styles)) != len(self.styles) or ANY_STYLE in self.styles or not all(self.styles):
            raise CheckpointError(f"style names must be distinct, non-empty and not {ANY_STYLE!r}: {self.styles}")
        starts = {}
        for style, pair in dict(self.style_starts).items():
            if style not in self.styles:
                raise CheckpointError(f"style_starts names an unknown style {style!r} (styles: {self.styles})")
            up, down = (int(c) for c in pair)
            if not (0 <= up < self.gpt.vocab_size_up and 0 <= down < self.gpt.vocab_size_down):
                raise CheckpointError(f"style_starts[{style!r}] {pair} is outside the codebooks")
            starts[style] = (up, down)
        self.style_starts = starts
        if self.follower is not None and (self.follower.vocab_size_up, self.follower.vocab_size_down) != (
                self.gpt.vocab_size_up, self.gpt.vocab_size_down):
            raise CheckpointError("the follower GPT's codebooks must be the model's "
                                  f"({self.gpt.vocab_size_up}, {self.gpt.vocab_size_down})")
        self.decoding = dict(self.decoding)
        _check_decoding(self.decoding, self.decoding, "decoding", "default decoding")
        self.style_decoding = {str(k): dict(v) for k, v in dict(self.style_decoding).items()}
        for style, decoding in self.style_decoding.items():
            if style not in self.styles:
                raise CheckpointError(f"style_decoding names an unknown style {style!r} (styles: {self.styles})")
            _check_decoding(decoding, self.decoding_for(style), f"style_decoding[{style!r}]",
                            f"decoding for style {style!r}")

    def style_index(self, style: str) -> int:
        """The GPT's style input for a style name: 0 for "any", 1 + its place in ``styles``."""
        if style == ANY_STYLE:
            return 0
        if style not in self.styles:
            known = ", ".join([ANY_STYLE, *self.styles])
            raise InvalidOptionError(f"unknown style {style!r}: this model knows {known}"
                                     if self.styles else f"this model has no styles (only {ANY_STYLE!r})")
        return self.styles.index(style) + 1

    def start_for(self, style: str) -> tuple[int, int]:
        """The start pair a dance in ``style`` begins with when the user gives none."""
        return self.style_starts.get(style, self.default_start)

    def decoding_for(self, style: str) -> dict[str, object]:
        """The decoding a dance in ``style`` gets where the user chose none: ``decoding`` with the
        style's own entries (``style_decoding``) over it."""
        return {**self.decoding, **self.style_decoding.get(style, {})}

    def normalise_music(self, features: torch.Tensor) -> torch.Tensor:
        """The GPT's music input: (..., music_dim) features standardised with the model's statistics
        (unchanged when it has none). Inference and the training stages all go through here."""
        return normalise_music(features, self.music_mean, self.music_std)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "feature_mode": self.feature_mode,
            "fps": self.fps,
            "default_start": list(self.default_start),
            "vqvae": self.vqvae.to_dict(),
            "gpt": self.gpt.to_dict(),
            **({"music_mean": self.music_mean, "music_std": self.music_std} if self.music_mean is not None else {}),
            **({"styles": self.styles,
                "style_starts": {k: list(v) for k, v in self.style_starts.items()}} if self.styles else {}),
            **({"decoding": self.decoding} if self.decoding else {}),
            **({"style_decoding": self.style_decoding} if self.style_decoding else {}),
            **({"follower": self.follower.to_dict()} if self.follower is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        try:
            return cls(
                name=str(d["name"]),
                vqvae=VQVAEConfig.from_dict(d["vqvae"]),
                gpt=_gpt_config_from_dict(d["gpt"]),
                feature_mode=str(d["feature_mode"]),
                fps=int(d.get("fps", 60)),
                default_start=tuple(d.get("default_start", (423, 12))),  # type: ignore[arg-type]
                description=str(d.get("description", "")),
                source=str(d.get("source", "")),
                music_mean=d.get("music_mean"),
                music_std=d.get("music_std"),
                styles=list(d.get("styles", [])),
                style_starts=dict(d.get("style_starts", {})),
                decoding=dict(d.get("decoding", {})),
                style_decoding=dict(d.get("style_decoding", {})),
                follower=_fields_config(FollowerConfig, d["follower"], "follower") if "follower" in d else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"invalid model config: {exc}") from exc


def _check_decoding(entries: dict[str, object], merged: dict[str, object], where: str, what: str) -> None:
    """A model's decoding entries: only known keys, and (``merged`` with what they complete) valid options."""
    unknown = set(entries) - set(DECODING_KEYS)
    if unknown:
        raise CheckpointError(f"{where} has unknown keys {sorted(unknown)} (known: {', '.join(DECODING_KEYS)})")
    try:
        SamplingOptions(**merged).check()  # type: ignore[arg-type]
    except (InvalidOptionError, TypeError) as exc:
        raise CheckpointError(f"the model's {what} is invalid: {exc}") from exc


def normalise_music(features: torch.Tensor, mean: list[float] | None, std: list[float] | None) -> torch.Tensor:
    """(features - mean) / std per column over the last axis; identity when ``mean`` is None."""
    if mean is None or std is None:
        return features
    mean_t = torch.tensor(mean, dtype=features.dtype, device=features.device)
    std_t = torch.tensor(std, dtype=features.dtype, device=features.device)
    return (features - mean_t) / std_t


def _fields_config(cls: type, d: dict, what: str) -> Any:
    """``cls(**d)`` for a config dataclass, refusing fields it does not have."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config fields: {sorted(unknown)}")
    return cls(**d)


def _gpt_config_from_dict(d: dict) -> GPTConfig:
    return _fields_config(GPTConfig, d, "GPT")


@dataclass
class DanceModel:
    config: ModelConfig
    vqvae: SepVQVAE
    gpt: CrossCondGPT
    path: Path | None = field(default=None, compare=False)  # where it was loaded from, if anywhere
    follower: FollowerGPT | None = None  # the duet's follower, when the model has one

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.vqvae, self.gpt, self.follower) if m is not None]

    def to(self, device: str | torch.device) -> DanceModel:
        for module in self.modules():
            module.to(device)
        return self

    def eval(self) -> DanceModel:
        for module in self.modules():
            module.eval()
        return self


def build_model(config: ModelConfig) -> DanceModel:
    """A model with random weights (the codebooks are random until the first training batch re-initialises
    them from encoder outputs)."""
    follower = FollowerGPT(config.follower) if config.follower is not None else None
    return DanceModel(config, SepVQVAE(config.vqvae), CrossCondGPT(config.gpt), follower=follower)


def debug_model_config(name: str = "debug-tiny") -> ModelConfig:
    """A tiny model for tests: VQ width 32, 64 codes per half, GPT 2 + 2 layers x 32 wide."""
    return ModelConfig(
        name=name,
        vqvae=VQVAEConfig.tiny(),
        gpt=GPTConfig.tiny(),
        feature_mode="full",
        default_start=(0, 0),
        description="tiny random model for tests",
        source="debug_model_config()",
    )


# --- saving ---------------------------------------------------------------------------------------------
def _is_our_model_folder(directory: Path) -> bool:
    try:
        return json.loads((directory / CONFIG_FILE).read_text()).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def _write_safetensors(module: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """The module's weights as a safetensors file whose bytes depend only on the weights and metadata.

    safetensors keeps the metadata in a hash map whose order changes from one write to the next, so the
    same weights gave files with different digests (and binary diffs in git for unchanged tensors).
    The header is the 8-byte length, then JSON padded with spaces: the metadata's entries are sorted
    in place, which keeps the header's length and every tensor's offset.
    """
    raw = safetensors_bytes(_tensors(module), metadata=metadata)
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # cannot happen for a reordering; keep the library's bytes if it ever does
        text = raw[8 : 8 + length]
    path.write_bytes(raw[:8] + text.ljust(length, b" ") + raw[8 + length :])


def write_config(config: ModelConfig, directory: str | Path) -> Path:
    """Write ``config.json`` into a model folder, atomically (a reader sees the old or the new file)."""
    target = Path(directory) / CONFIG_FILE
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return target


def save_model(model: DanceModel, directory: str | Path) -> Path:
    """Write the model folder atomically; an existing model folder at ``directory`` is replaced.

    Refuses to replace a folder that is not empty and not one of our model folders.
    """
    target = Path(directory).expanduser().resolve()
    if target.exists():
        if not target.is_dir():
            raise CheckpointError(f"{target} exists and is not a folder; choose another output path")
        if any(target.iterdir()) and not _is_our_model_folder(target):
            raise CheckpointError(f"{target} is not empty and is not a model folder; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)}
        _write_safetensors(model.vqvae, staging / VQVAE_FILE, meta)
        _write_safetensors(model.gpt, staging / GPT_FILE, meta)
        if model.follower is not None:
            _write_safetensors(model.follower, staging / FOLLOWER_FILE, meta)
        write_config(model.config, staging)
        if target.exists():  # swap: old -> backup, new -> target, then drop the backup
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            backup.rmdir()
            os.replace(target, backup)
            try:
                os.replace(staging, target)
            except OSError:
                os.replace(backup, target)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# --- loading --------------------------------------------------------------------------------------------
def _check_folder(directory: str | Path) -> Path:
    path = Path(directory).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise NotAModelFolderError(f"{path} is a file, not a model folder (expected a folder with "
                                   f"{', '.join(MODEL_FILES)}); to convert official .pt checkpoints use "
                                   f"'python -m engine import-official'")
    present = [name for name in MODEL_FILES if (path / name).is_file()]
    if not present:
        raise NotAModelFolderError(f"{path} is not a model folder: it has none of {', '.join(MODEL_FILES)}")
    missing = [name for name in MODEL_FILES if name not in present]
    if missing:
        raise MissingModelFileError(f"model folder {path} is incomplete: missing {', '.join(missing)}")
    return path


def _read_config(path: Path) -> ModelConfig:
    try:
        raw = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise NotAModelFolderError(f"{path / CONFIG_FILE} is not readable JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise NotAModelFolderError(f"{path / CONFIG_FILE} is not a config of this project's model format")
    version = raw.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise UnsupportedFormatError(f"{path / CONFIG_FILE}: unknown format_version {version!r}")
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(f"{path} was written by a newer version (format {version}; this engine "
                                     f"reads up to {FORMAT_VERSION}); update the add-on")
    return ModelConfig.from_dict(raw)


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file} is not a readable safetensors file ({exc}); the model may be "
                              f"truncated or corrupt") from exc


def first_non_finite(tensors: Iterable[tuple[str, object]]) -> tuple[str, int] | None:
    """(name, count of bad values) of the first floating-point tensor among ``(name, value)`` pairs that
    holds a NaN or an infinity (other values are skipped), or None when all are finite."""
    for name, tensor in tensors:
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name, int((~torch.isfinite(tensor)).sum())
    return None


def check_finite(state: dict[str, torch.Tensor], what: str) -> None:
    """Raise ``NonFiniteWeightsError`` naming the first floating-point tensor of ``state`` that holds a
    NaN or an infinity."""
    bad = first_non_finite(state.items())
    if bad is not None:
        raise NonFiniteWeightsError(f"{what}: {bad[0]} holds {bad[1]} NaN or infinite value(s); the model is "
                                    "broken (its training diverged?) and cannot dance")


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module`` requiring every name and shape to match; the tensors are adopted
    (not copied), so ``module`` may be built with ``empty_modules()`` or on the 'meta' device. Raises WeightsMismatchError naming the keys."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} != {expected[k]}"
                   for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                shown = ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise WeightsMismatchError(f"{what} does not match its config: " + "; ".join(parts))
    module.load_state_dict(state, strict=True, assign=True)


_INIT_FUNCTIONS = ("normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                   "xavier_uniform_", "xavier_normal_", "zeros_", "ones_", "constant_")


@contextlib.contextmanager
def empty_modules() -> Iterator[None]:
    """Build modules without their random initialisation (the weights stay uninitialised memory).

    For modules that ``load_state_strict`` fills right after: no time is spent drawing random numbers
    that are thrown away (seconds for the official size), and the untouched memory is never committed.
    (The 'meta' device would be lighter still, but some of its ops import torch._dynamo: seconds.)
    """
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, _keep)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def _keep(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return tensor


def _build_empty(config: ModelConfig) -> DanceModel:
    with empty_modules():
        return build_model(config)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that this machine has; raises ``InvalidOptionError`` for a name torch
    does not know or a device that is not there (``cuda`` without CUDA, ``cuda:3`` with two GPUs)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidOptionError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidOptionError(f"device {device!r}: this machine has no CUDA GPU that torch can use; use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InvalidOptionError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA "
                                     f"GPU(s), numbered from 0")
        return resolved
    if resolved.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise InvalidOptionError(f"device {device!r}: this machine has no Apple GPU (MPS); use cpu")
        return resolved
    raise InvalidOptionError(f"device {device!r} is not supported: use cpu, cuda, cuda:N or mps")


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> DanceModel:
    """Read a model folder (never executes code from it); the model is returned in eval mode.

    The weights must be finite: a model whose training diverged (NaN or infinite values) is refused,
    naming the file and the first bad tensor, instead of dancing one code forever."""
    device = check_device(device)
    path = _check_folder(directory)
    config = _read_config(path)
    model = _build_empty(config)
    parts = [(model.vqvae, path / VQVAE_FILE), (model.gpt, path / GPT_FILE)]
    if model.follower is not None:
        if not (path / FOLLOWER_FILE).is_file():
            raise MissingModelFileError(f"model folder {path} is incomplete: its config has a follower but "
                                        f"{FOLLOWER_FILE} is missing")
        parts.append((model.follower, path / FOLLOWER_FILE))
    for module, file in parts:
        state = _read_weights(file)
        check_finite(state, str(file))
        load_state_strict(module, state, str(file))
    model.path = path.resolve()
    return model.to(device).eval()


def model_info(directory: str | Path) -> dict:
    """Config, parameter counts and file sizes of a model folder, without loading the weights."""
    path = _check_folder(directory)
    config = _read_config(path)
    info = config.to_dict()
    info["path"] = str(path.resolve())
    info["stored_values"] = {}
    info["file_bytes"] = {name: (path / name).stat().st_size for name in MODEL_FILES}
    files = [("vqvae", VQVAE_FILE), ("gpt", GPT_FILE)]
    if config.follower is not None and (path / FOLLOWER_FILE).is_file():
        files.append(("follower", FOLLOWER_FILE))
        info["file_bytes"][FOLLOWER_FILE] = (path / FOLLOWER_FILE).stat().st_size
    for key, file in files:
        try:
            with safe_open(str(path / file), framework="pt") as f:
                count = 0
                for name in f.keys():
                    n = 1
                    for size in f.get_slice(name).get_shape():
                        n *= size
                    count += n
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path / file} is not a readable safetensors file ({exc})") from exc
        info["stored_values"][key] = count
    info["has_critic"] = config.gpt.n_layer_critic > 0
    return info
