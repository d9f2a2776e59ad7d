"""Shared fixtures: where the real data and the golden vectors live, skipping cleanly when absent.

The project never commits ``../shared``; point ``DANCE_SHARED`` elsewhere to use another copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DANCE_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
GOLDEN = SHARED / "reference" / "golden"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data is not part of the repository)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(DATA)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _need(GOLDEN)


@pytest.fixture(scope="session")
def music_dir() -> Path:
    return _need(DATA / "music")


@pytest.fixture(scope="session")
def aistpp_slices_dir() -> Path:
    return _need(DATA / "aistpp_slices")


@pytest.fixture
def one_thread():
    """torch on one thread during the test: tiny models are all per-op overhead, and on the shared
    2-core machine extra threads only wait for other processes."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _seed_codebooks(model) -> None:
    """Fill the VQ-VAE codebooks with seeded noise: they start at zero (training initialises them from
    data), and then every code would decode to the same pose."""
    import torch

    with torch.no_grad():
        for name, buffer in model.vqvae.named_buffers():
            if name.endswith("bottleneck.level_blocks.0.k"):
                buffer.normal_()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init model folder (engine.checkpoint's debug config), made once per session.

    The VQ-VAE codebooks start at zero (they are initialised from data in training), so every code
    would decode to the same pose; they are filled with seeded noise so that codes differ.
    """
    import torch

    from engine.checkpoint import build_model, debug_model_config, save_model

    torch.manual_seed(0)
    model = build_model(debug_model_config())
    _seed_codebooks(model)
    return save_model(model, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def duo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a tiny follower (duet) GPT on its codes, random weights."""
    import dataclasses

    import torch

    from engine.checkpoint import build_model, debug_model_config, save_model
    from engine.models.follower import FollowerConfig
    from engine.relative_position import DEFAULT_GRID

    torch.manual_seed(0)
    config = dataclasses.replace(debug_model_config("debug-duo"),
                                 follower=FollowerConfig.tiny(n_relpos=DEFAULT_GRID.size))
    model = build_model(config)
    _seed_codebooks(model)
    return save_model(model, tmp_path_factory.mktemp("models") / "duo")


@pytest.fixture(scope="session")
def styled_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with two styles ("salsa", "ballet"; "ballet" has its own start pair (5, 7)); their
    embeddings scaled up so that a random model feels them."""
    import dataclasses

    import torch

    from engine.checkpoint import build_model, debug_model_config, save_model

    torch.manual_seed(0)
    base = debug_model_config("debug-styled")
    config = dataclasses.replace(base, gpt=dataclasses.replace(base.gpt, n_styles=2), styles=["salsa", "ballet"],
                                 style_starts={"ballet": (5, 7)})
    model = build_model(config)
    _seed_codebooks(model)
    with torch.no_grad():
        model.gpt.gpt_base.style_emb.weight.normal_(std=2.0)
    return save_model(model, tmp_path_factory.mktemp("models") / "styled")


@pytest.fixture
def short_song(music_dir: Path, tmp_path: Path):
    """``short_song(seconds, name="clip", offset=10.0)``: a WAV cut from a real song into tmp_path."""
    import soundfile

    source = sorted(music_dir.glob("*.ogg"))[0]

    def cut(seconds: float, name: str = "clip", offset: float = 10.0) -> Path:
        info = soundfile.info(str(source))
        start = int(min(offset, max(info.duration - seconds, 0.0)) * info.samplerate)
        audio, sr = soundfile.read(str(source), start=start, frames=int(seconds * info.samplerate))
        path = tmp_path / f"{name}.wav"
        soundfile.write(str(path), audio, sr)
        return path

    return cut
