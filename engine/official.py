"""Import the released Bailando checkpoints (``.pt`` pickles) into our model format.

The official files are ``torch.save`` zip archives holding a pickled dict
``{'model': state_dict with a 'module.' prefix, 'config': easydict.EasyDict, 'epoch': int}``.
``torch.load(weights_only=True)`` refuses them because of the EasyDict, and a plain ``torch.load`` would
run whatever the pickle asks for. So they are read with a restricted unpickler: only the globals in
``ALLOWED_GLOBALS`` can be named by the pickle (torch's tensor/storage rebuild helpers, OrderedDict, torch
dtypes and sizes), config objects (``easydict.EasyDict``, ``argparse.Namespace``) become plain dicts
without importing easydict, and anything else stops the load with ``UnsafeCheckpointError`` before it
is imported or called.

Name mapping: after stripping ``module.``, official names equal ours (SepVQVAER -> ``SepVQVAE``,
CrossCondGPT2 / CrossCondGPT2AC -> ``CrossCondGPT``), so the weights are loaded with every name and shape
checked. The GPT's ``attn.mask`` buffers are loaded from the file as they are. The only names we add
are the codebook EMA statistics (``k_sum``, ``k_elem``, ``initialised``), absent from the official files;
they are derived from the codebook ``k`` as the official code does when it restores a codebook.
"""

from __future__ import annotations

import collections
import pickle
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import DanceModel, ModelConfig, check_finite, empty_modules, load_state_strict, save_model
from .errors import CheckpointError, ModelError, UnsafeCheckpointError
from .models.gpt import CrossCondGPT, GPTConfig
from .models.vqvae import SepVQVAE, VQVAEConfig

# Where the official README unpacks the weights, relative to its ``experiments`` folder.
VQVAE_CKPT = Path("sep_vqvae_root/ckpt/epoch_500.pt")
GPT_CKPT = Path("cc_motion_gpt/ckpt/epoch_400.pt")
ACTOR_CRITIC_CKPT = Path("actor_critic/ckpt/epoch_10.pt")
OFFICIAL_START = (423, 12)  # the official demo's start codes (up, down)

VQVAE_PREFIXES = ("vqvae_up.", "vqvae_down.")
GPT_PREFIXES = ("gpt_base.", "gpt_head.", "critic_net.")


# --- the restricted unpickler -------------------------------------------------------------------------
class _ConfigDict(dict):
    """Stands in for config objects (easydict.EasyDict, argparse.Namespace): keeps only the items."""

    def __setstate__(self, state: Any) -> None:
        # EasyDict pickles its items twice (as dict items and as attributes); Namespace only as attributes.
        if isinstance(state, dict):
            self.update(state)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any) -> torch.Tensor:
    """A saved nn.Parameter, loaded as a plain tensor (its hooks are never needed for weights)."""
    return data


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("easydict", "EasyDict"): _ConfigDict,
    ("argparse", "Namespace"): _ConfigDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    # torch.load subclasses this and resolves '*Storage' names (torch.FloatStorage, ...) itself before
    # calling find_class; storages only hold bytes read from the archive.
    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)  # torch.float32 and friends (used by newer tensor rebuilds)
        raise UnsafeCheckpointError(
            f"refusing to load this checkpoint: it asks for '{module}.{name}', which is not a tensor, "
            f"storage or plain config; official Bailando checkpoints never do this, so the file is "
            f"not one of them (or has been tampered with)"
        )


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# A stand-in for the ``pickle`` module, handed to torch.load as ``pickle_module``.
restricted_pickle = types.ModuleType("restricted_pickle")
restricted_pickle.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
restricted_pickle.load = _restricted_load  # type: ignore[attr-defined]


def _plain(obj: Any) -> Any:
    """Config objects -> nested plain dicts / lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


@dataclass
class OfficialCheckpoint:
    state_dict: dict[str, torch.Tensor]  # names without the 'module.' prefix
    config: dict  # the pickled config as plain dicts
    epoch: int | None
    path: Path | None = None


def load_official_checkpoint(path: str | Path) -> OfficialCheckpoint:
    """Read an official ``.pt`` file safely (see the module docstring). Raises CheckpointError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"official checkpoint {path} does not exist" if not path.exists()
                              else f"{path} is not a file")
    try:
        raw = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except UnsafeCheckpointError:
        raise
    except Exception as exc:  # truncated / not a torch file / corrupt archive: all the same to a user
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}); "
                              f"the download may be incomplete") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise CheckpointError(f"{path} is not an official Bailando checkpoint: expected a dict with a "
                              f"'model' state dict, got {type(raw).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in raw["model"].items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} of the state dict is not a tensor")
        name = key[len("module."):] if key.startswith("module.") else key
        state[name] = value
    config = _plain(raw.get("config") or {})
    epoch = raw.get("epoch")
    return OfficialCheckpoint(state, config if isinstance(config, dict) else {},
                              epoch if isinstance(epoch, int) else None, path)


# --- configs --------------------------------------------------------------------------------------------
def _kind(state: dict[str, torch.Tensor]) -> str:
    if state and all(k.startswith(VQVAE_PREFIXES) for k in state):
        return "vqvae"
    if state and all(k.startswith(GPT_PREFIXES) for k in state):
        return "gpt"
    return "unknown"


def vqvae_config_from_official(structure: dict) -> VQVAEConfig:
    """``config.structure`` of a SepVQVAE / SepVQVAER checkpoint -> VQVAEConfig."""
    try:
        up, down = structure["up_half"], structure["down_half"]
        halves = []
        for half in (up, down):
            if int(half.get("levels", 1)) != 1:
                raise CheckpointError(f"only one-level VQ-VAEs are supported, got levels={half['levels']}")
            halves.append(VQVAEConfig(
                emb_width=int(half["emb_width"]),
                l_bins=int(half["l_bins"]),
                width=int(half["width"]),
                depth=int(half["depth"]),
                downs_t=int(half["downs_t"][0]),
                stride_t=int(half["strides_t"][0]),
                dilation_growth_rate=int(half["dilation_growth_rate"]),
                dilation_cycle=half.get("dilation_cycle"),
                m_conv=float(half.get("m_conv", 1.0)),
                reverse_decoder_dilation=bool(half.get("vqvae_reverse_decoder_dilation", True)),
                l_mu=float(half.get("l_mu", 0.99)),
                commit=float(half.get("commit", 0.02)),
                sample_length=int(half.get("sample_length", 240)),
                with_root_decoder=structure.get("name") == "SepVQVAER",
            ))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise CheckpointError(f"official VQ-VAE config is incomplete or malformed: {exc!r}") from exc
    if halves[0] != halves[1]:
        raise CheckpointError("the official VQ-VAE halves have different sizes; only equal halves are supported")
    return halves[0]


def gpt_config_from_official(structure: dict, with_critic: bool) -> GPTConfig:
    """``config.structure_generate`` of a CrossCondGPT2 / CrossCondGPT2AC checkpoint -> GPTConfig.

    The critic is built only when the weights hold one (``with_critic``): the GPT-only checkpoint's
    config may still describe a critic.
    """
    try:
        base, head = structure["base"], structure["head"]
        n_embd = int(base["n_embd"])
        if int(base.get("n_music_emb", n_embd)) != n_embd:
            raise CheckpointError("official GPT with n_music_emb != n_embd is not supported")
        critic = structure.get("critic_net") if with_critic else None
        if with_critic and critic is None:
            raise CheckpointError("the checkpoint holds critic weights but its config has no 'critic_net'")
        for part in [head] + ([critic] if critic else []):
            if int(part["n_embd"]) != n_embd or int(part["n_head"]) != int(base["n_head"]):
                raise CheckpointError("official GPT parts of different widths are not supported")
        return GPTConfig(
            vocab_size_up=int(base["vocab_size_up"]),
            vocab_size_down=int(base["vocab_size_down"]),
            block_size=int(structure.get("block_size", base["block_size"])),
            n_music=int(base.get("n_music", structure.get("n_music", 438))),
            n_embd=n_embd,
            n_head=int(base["n_head"]),
            n_layer_base=int(base["n_layer"]),
            n_layer_head=int(head["n_layer"]),
            n_layer_critic=int(critic["n_layer"]) if critic else 0,
            embd_pdrop=float(base.get("embd_pdrop", 0.1)),
            resid_pdrop=float(base.get("resid_pdrop", 0.1)),
            attn_pdrop=float(base.get("attn_pdrop", 0.1)),
        )
    except CheckpointError:
        raise
    except ModelError as exc:  # GPTConfig refuses the sizes (e.g. n_embd not a multiple of n_head)
        raise CheckpointError(f"official GPT config describes a model that cannot be built: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"official GPT config is incomplete or malformed: {exc!r}") from exc


# --- weights --------------------------------------------------------------------------------------------
def _with_codebook_statistics(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the EMA statistics our codebooks keep: k_sum = k, k_elem = 1, initialised (as on a restore)."""
    out = dict(state)
    for name, k in state.items():
        if name.endswith(".bottleneck.level_blocks.0.k"):
            prefix = name[: -len("k")]
            out.setdefault(prefix + "k_sum", k.clone())
            out.setdefault(prefix + "k_elem", torch.ones(k.shape[0], dtype=k.dtype, device=k.device))
            out.setdefault(prefix + "initialised", torch.ones((), dtype=torch.bool, device=k.device))
    return out


def _where(ckpt: OfficialCheckpoint) -> str:
    return str(ckpt.path) if ckpt.path else "official checkpoint"


# What each kind of official file is called in messages, where it lives, and its config section.
_KIND_NAME = {"vqvae": "VQ-VAE", "gpt": "GPT"}
_EXPECTED = {
    "vqvae": ("the pose VQ-VAE", f"{VQVAE_CKPT}", "structure"),
    "gpt": ("the motion GPT", f"{GPT_CKPT} or {ACTOR_CRITIC_CKPT}", "structure_generate"),
}


def _config_section(ckpt: OfficialCheckpoint, kind: str) -> dict:
    """The config section describing a model of ``kind``; CheckpointError when the file holds another kind."""
    found = _kind(ckpt.state_dict)
    what, expected, section = _EXPECTED[kind]
    if found != kind:
        raise CheckpointError(f"{_where(ckpt)} holds a {_KIND_NAME.get(found, 'non-Bailando')} "
                              f"checkpoint, not {what} (expected {expected})")
    if section not in ckpt.config:
        raise CheckpointError(f"{_where(ckpt)} has no '{section}' in its config; is it a Bailando {_KIND_NAME[kind]}?")
    return ckpt.config[section]


def vqvae_from_official(ckpt: OfficialCheckpoint, device: str | torch.device = "cpu") -> SepVQVAE:
    """Build our SepVQVAE holding the official weights (every name and shape checked)."""
    config = vqvae_config_from_official(_config_section(ckpt, "vqvae"))
    with empty_modules():
        model = SepVQVAE(config)
    state = _with_codebook_statistics(ckpt.state_dict)
    check_finite(state, _where(ckpt))
    load_state_strict(model, state, _where(ckpt))
    return model.to(device)


def gpt_from_official(ckpt: OfficialCheckpoint, device: str | torch.device = "cpu") -> CrossCondGPT:
    """Build our CrossCondGPT (with its critic when the file holds one) from an official GPT / AC file."""
    section = _config_section(ckpt, "gpt")
    with_critic = any(k.startswith("critic_net.") for k in ckpt.state_dict)
    config = gpt_config_from_official(section, with_critic)
    with empty_modules():
        model = CrossCondGPT(config)
    check_finite(ckpt.state_dict, _where(ckpt))
    load_state_strict(model, ckpt.state_dict, _where(ckpt))
    return model.to(device)


def import_official(experiments_dir: str | Path, out_dir: str | Path, name: str = "bailando-official") -> Path:
    """Convert the official release (the ``experiments`` folder of the official README) into a model folder.

    Uses ``sep_vqvae_root/ckpt/epoch_500.pt`` and ``actor_critic/ckpt/epoch_10.pt`` (the paper's model;
    its critic is kept), or ``cc_motion_gpt/ckpt/epoch_400.pt`` when there is no actor-critic file.
    Writes ``out_dir`` atomically and returns it.
    """
    root = Path(experiments_dir).expanduser()
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a folder; pass the 'experiments' folder the official weights "
                              f"were unpacked into (it holds {VQVAE_CKPT.parts[0]}/ and {ACTOR_CRITIC_CKPT.parts[0]}/)")
    if not (root / VQVAE_CKPT).is_file():
        raise CheckpointError(f"{root / VQVAE_CKPT} is missing: the VQ-VAE with the root branch is needed")
    gpt_path = root / ACTOR_CRITIC_CKPT
    if not gpt_path.is_file():
        gpt_path = root / GPT_CKPT
    if not gpt_path.is_file():
        raise CheckpointError(f"no motion GPT found: neither {root / ACTOR_CRITIC_CKPT} nor {root / GPT_CKPT} exists")

    vq_ckpt = load_official_checkpoint(root / VQVAE_CKPT)
    gpt_ckpt = load_official_checkpoint(gpt_path)
    vqvae = vqvae_from_official(vq_ckpt)
    gpt = gpt_from_official(gpt_ckpt)
    if (gpt.config.vocab_size_up, gpt.config.vocab_size_down) != (vqvae.config.l_bins, vqvae.config.l_bins):
        raise CheckpointError(f"the GPT's vocabularies ({gpt.config.vocab_size_up}, {gpt.config.vocab_size_down}) "
                              f"do not match the VQ-VAE codebooks ({vqvae.config.l_bins})")
    start = OFFICIAL_START
    if not (start[0] < vqvae.config.l_bins and start[1] < vqvae.config.l_bins):
        start = (0, 0)  # smaller test-size models: the official codes do not exist
    gpt_desc = (f"{gpt_path.relative_to(root)} (epoch {gpt_ckpt.epoch})")
    config = ModelConfig(
        name=name,
        vqvae=vqvae.config,
        gpt=gpt.config,
        feature_mode="official",
        fps=60,
        default_start=start,
        description="Bailando (CVPR 2022) released weights: pose VQ-VAE with root branch + "
                    + ("actor-critic fine-tuned GPT" if gpt.critic_net is not None else "motion GPT"),
        source=f"imported from {VQVAE_CKPT} (epoch {vq_ckpt.epoch}) and {gpt_desc}",
    )
    return save_model(DanceModel(config, vqvae.eval(), gpt.eval()), out_dir)
