"""Fixtures for the add-on tests, run on the real bpy module.

The Blender-layer tests start from an empty factory scene (``fresh_scene``, asked for by each module),
so no test sees another's objects or actions; the UI tests enable the add-on (``enabled``).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

ADDON = "addon"  # the add-on's module name (the repository's addon/ package)


def blender_has_audio() -> bool:
    """False on the PyPI bpy 4.2 build (no Audaspace): no sound strips there."""
    try:
        from addon.blender import compat
    except ImportError:
        return True
    return compat.has_audio()


needs_audio = pytest.mark.skipif(not blender_has_audio(), reason="this bpy build has no audio (Audaspace)")


@pytest.fixture
def fresh_scene():
    """An empty factory scene before and after the test (the Blender-layer modules ask for it with
    ``pytestmark = pytest.mark.usefixtures("fresh_scene")``), so no test sees another's objects."""
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture(scope="module")
def enabled():
    """The add-on enabled from the repository for the module's tests; yields its preferences."""
    bpy = pytest.importorskip("bpy")
    import addon_utils  # ships with bpy

    addon_utils.enable(ADDON, default_set=True, handle_error=None)
    yield bpy.context.preferences.addons[ADDON].preferences
    addon_utils.disable(ADDON, default_set=True)


def make_dance(num_frames: int, seed: int = 0, amplitude: float = 0.5):
    """A smooth random dance: (rotations (T, 24, 4), translation (T, 3), joints (T, 24, 3)) y-up.

    Each joint's axis-angle is a sum of two random sinusoids; the root wanders and bobs.
    """
    from engine import rotation, skeleton

    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)[:, None, None] / 60.0  # (T, 1, 1) seconds
    freq = rng.uniform(0.3, 2.0, size=(2, 24, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(2, 24, 3))
    amp = rng.uniform(0.2, 1.0, size=(2, 24, 3)) * amplitude
    aa = (amp[0] * np.sin(2 * np.pi * freq[0] * t + phase[0])
          + amp[1] * np.sin(2 * np.pi * freq[1] * t + phase[1]))  # (T, 24, 3)
    local = rotation.axis_angle_to_matrix(aa)
    quats = rotation.matrix_to_quaternion(local)
    time = t[:, 0, 0]
    translation = np.stack(
        [0.6 * np.sin(0.7 * time), 1.2 + 0.05 * np.sin(4.0 * time), 0.4 * np.cos(0.5 * time)], axis=1
    )
    joints, _ = skeleton.forward_kinematics_matrices(local, translation, skeleton.REST_JOINTS)
    return quats, translation, joints


def as_dance(rotations, translation, fps: float = 60.0, rest_joints=None, song_path=None):
    """An ``engine.dance.Dance`` holding a rotation motion (what the Blender layer keys)."""
    from engine import skeleton
    from engine.dance import Dance

    rest = skeleton.REST_JOINTS if rest_joints is None else rest_joints
    joints = np.zeros((len(rotations), 24, 3), dtype=np.float32)  # unused by the Blender layer
    return Dance(joints=joints, fps=fps, rotations=rotations, translation=translation, rest_joints=rest,
                 song_path=song_path)


@pytest.fixture
def dance_factory():
    """``make_dance`` itself, for tests that need another length or seed."""
    return make_dance


@pytest.fixture
def dance():
    """120 frames at 60 fps on the SMPL rest skeleton."""
    return make_dance(120)


@pytest.fixture
def song_wav(tmp_path: Path) -> Path:
    """A 2-second 440 Hz mono WAV at 48 kHz."""
    rate = 48000
    samples = (np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate) * 12000).astype(np.int16)
    path = tmp_path / "my song.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture
def ui_scene(enabled, tiny_model_dir):
    """An empty scene with the add-on enabled on the tiny model, CPU, an undo stack; any job cancelled after."""
    import bpy

    from addon.ui import jobs

    bpy.ops.wm.read_homefile(use_empty=True)
    enabled.model_dir = str(tiny_model_dir)
    enabled.device = "CPU"
    bpy.ops.ed.undo_push(message="test start")  # the bpy module starts without an undo stack
    yield bpy.context.scene
    jobs.cancel_active()
