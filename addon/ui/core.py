"""The plain functions behind the operators (no UI): model lookup, the cached engine, applying finished
dances to the scene, and posing an armature for the start-code preview.

Operators gather options from properties and call these; the batch renderer calls them too. Engine
work (``generate_dances``) touches no Blender data, so it may run in a worker thread; everything that
changes the scene (``apply_dances``, ``pose_armature``) runs on the main thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _engine
from ..blender import armature as bl_armature
from ..blender import compat
from ..blender import keyframes as bl_keyframes
from ..blender import scene as bl_scene
from ..blender.errors import AudioUnsupportedError

skeleton = _engine.skeleton
errors = _engine.errors


ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


# --- model and device ------------------------------------------------------------------------------
def resolve_model_dir(chosen: str | Path | None) -> Path:
    """The model folder chosen in the preferences, else the embedded default model."""
    if chosen and str(chosen).strip():
        path = Path(str(chosen)).expanduser()
    else:
        path = _engine.checkpoint.default_model_dir()
    if not (path / "config.json").is_file():
        where = "the folder chosen in the add-on preferences" if chosen else "the embedded default model"
        raise errors.ModelError(
            f"no model found at {path} ({where}); choose a model folder in Preferences > Add-ons > "
            "Bailando Dance"
        )
    return path


def model_styles(model_dir: str | Path) -> list[str]:
    """The styles a model folder offers ("styles" in its config.json), read without torch or the weights,
    for the Style menu; [] when the folder has none or cannot be read (the engine says why on Generate)."""
    try:
        styles = json.loads((Path(model_dir) / "config.json").read_text()).get("styles", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(s) for s in styles] if isinstance(styles, list) else []


def torch_device(choice: str) -> str:
    """'CPU' -> 'cpu'; 'GPU' -> 'cuda' or 'mps', whichever torch can use."""
    if choice.upper() == "CPU":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    raise errors.InvalidOptionError("torch sees no GPU on this machine; choose CPU in the add-on preferences")


_CACHE_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str, float], Any] = {}


def get_choreographer(model_dir: str | Path, device: str = "cpu") -> Any:
    """A loaded ``Choreographer``, kept between calls (loading a model takes seconds, a preview 10 ms).

    Keyed by folder, device and the config's modification time, so a replaced model is reloaded.
    """
    model_dir = Path(model_dir).resolve()
    config = model_dir / "config.json"
    key = (str(model_dir), device, config.stat().st_mtime if config.exists() else 0.0)
    with _CACHE_LOCK:
        if key not in _CACHE:
            generate = _engine.generate
            _CACHE.clear()  # one model at a time: they are large
            _CACHE[key] = generate.Choreographer(model_dir, device=device)
        return _CACHE[key]


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


# --- generation (worker thread: no Blender data) ---------------------------------------------------
def check_song(path: str | Path) -> Path:
    if not str(path).strip():
        raise errors.InvalidOptionError("choose a song first (wav, mp3, ogg or flac)")
    song = _engine.audio.check_song_file(Path(str(path)).expanduser())
    return song.resolve()


def generate_dances(
    model_dir: str | Path,
    device: str,
    song: str | Path,
    options_list: Sequence[Any],
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> list[Any]:
    """One dance per option set on one song: the engine reads the music once and decodes the variations
    as one batch (``Choreographer.generate_many``: the same dances as one by one, 4 in 1.7x the time of one)."""
    if progress is not None:
        progress(0.0, "Loading the model")
    choreographer = get_choreographer(model_dir, device)
    return choreographer.generate_many(song, list(options_list), progress=progress, cancel=cancel)


# --- applying results (main thread) ----------------------------------------------------------------
def action_names(song: str | Path, count: int) -> list[str]:
    stem = Path(str(song)).stem
    return [stem] if count == 1 else [f"{stem} v{i + 1}" for i in range(count)]


def check_target(target: Any, preset: str) -> None:
    """Raise (before anything changes) when ``target`` cannot take a dance through ``preset``."""
    from ..blender import rigmap

    rigmap.resolve_bone_map(target, preset)


@dataclass(frozen=True)
class AppliedDances:
    """What ``apply_dances`` did: the armature keyed, the new actions (the last one active) and the
    action the armature carried before, when it was stashed in its NLA to keep it (else None)."""

    armature: Any
    actions: list[Any]
    stashed: Any = None
    warnings: tuple[str, ...] = ()

    def message(self) -> str:
        text = f"New action(s) {', '.join(a.name for a in self.actions)} on {self.armature.name}"
        if self.stashed is not None:
            text += f"; its previous action {self.stashed.name!r} is kept in the NLA ({compat.STASH_TRACK_NAME})"
        return "; ".join([text, *self.warnings])


def apply_dances(
    scene: Any,
    dances: Sequence[Any],
    song: str | Path,
    *,
    target: Any = None,
    preset: str = "SMPL",
    with_mesh: bool = True,
) -> AppliedDances:
    """Add the song, then key each dance as a NEW action on ``target`` (None: a new SMPL armature).

    The last action stays assigned; the others keep a fake user so they are saved with the file and
    listed in the Action editor. An action ``target`` carried that nothing else uses (the user's own
    animation) is stashed in its NLA, never orphaned.
    """
    if not dances:
        raise errors.DanceError("the engine returned no dance")
    for dance in dances:
        bl_keyframes.dance_motion(dance)  # every dance is a motion before anything changes
    if target is not None:
        check_target(target, preset)  # fail before the song strip is added
    fps = float(dances[0].fps)
    warnings: list[str] = []
    try:
        bl_scene.load_song(scene, song, fps=fps)
    except AudioUnsupportedError as exc:  # a dance without its sound strip is still a dance
        bl_scene.set_scene_fps(scene, fps)
        warnings.append(f"the song was not added ({exc}); play it alongside or render with it")
    names = action_names(song, len(dances))
    actions: list[Any] = []
    stashed = None
    created = None
    if target is None:
        target = created = bl_armature.create_smpl_armature(
            Path(str(song)).stem, dances[0].rest_joints, with_mesh=with_mesh, collection=scene.collection
        )
    else:
        anim = target.animation_data
        previous = anim.action if anim is not None else None
        if previous is not None and compat.would_be_orphaned(previous):
            stashed = previous  # assign_new_action stashes it when the first new action replaces it
    for dance, name in zip(dances, names):
        if actions:
            actions[-1].use_fake_user = True  # a variation replaced by the next one is kept, not stashed
        actions.append(_key_dance(target, dance, name, preset if created is None else None, scene))
    scene.frame_current = scene.frame_start
    return AppliedDances(target, actions, stashed, tuple(warnings))


def _key_dance(target: Any, dance: Any, name: str, preset: str | None, scene: Any) -> Any:
    """One dance as a new action on ``target``: directly on an SMPL armature the add-on made
    (``preset`` None), else through the rig map ``preset``."""
    from ..blender import render_setup

    if preset is None:
        action = bl_keyframes.apply_dance(target, dance, name, scene=scene)
    else:
        from ..blender import rigmap

        action = rigmap.retarget_to_rig(target, dance, name, preset, scene=scene)
    render_setup.tag_action(action, dance.meta)  # style and model, for the preview's caption
    return action


# --- start-pose preview (main thread) --------------------------------------------------------------
@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run tiny torch work (one pose) on one thread.

    Decoding one pose is a few tiny convolutions: with several threads, their synchronisation costs
    more than the work (measured 16 ms on one thread vs 460 ms on two on a busy 2-core machine).
    """
    import torch

    from . import jobs

    running = jobs.active()
    if running is not None and not running.done:  # the thread count is global: leave a generation alone
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def preview_joints(choreographer: Any, up: int, down: int) -> np.ndarray:
    """The pose (24, 3) y-up a code pair decodes to."""
    with one_torch_thread():
        return choreographer.preview_pose(up, down)


def encode_joints(choreographer: Any, joints: np.ndarray) -> tuple[int, int]:
    """The code pair nearest a pose (24, 3) y-up."""
    with one_torch_thread():
        return choreographer.encode_pose(joints)


def scene_frame_rate(scene: Any) -> float:
    """The scene's frame rate as the engine takes it (24, 30 or 60 fps); another one is refused."""
    fps = bl_scene.scene_fps(scene)
    for supported in _engine.generate.SUPPORTED_FPS:
        if abs(fps - supported) < 1e-3:
            return float(supported)
    raise errors.InvalidOptionError(f"the scene runs at {fps:g} fps; the engine makes dances at 24, 30 or 60 fps: "
                                    "set the scene's frame rate (Output Properties) to one of them")


def is_smpl_armature(obj: Any) -> bool:
    return getattr(obj, "type", None) == "ARMATURE" and all(n in obj.data.bones for n in skeleton.JOINT_NAMES)


def armature_rest_joints(obj: Any) -> np.ndarray:
    """Rest joints (24, 3) y-up metres of an SMPL armature: its bone heads (armature space)."""
    heads = np.array([obj.data.bones[n].head_local for n in skeleton.JOINT_NAMES], dtype=np.float64)
    return skeleton.zup_to_yup(heads)


def armature_pose_joints(obj: Any) -> np.ndarray:
    """Current posed joints (24, 3) y-up metres of an SMPL armature (armature space)."""
    heads = np.array([obj.pose.bones[n].head for n in skeleton.JOINT_NAMES], dtype=np.float64)
    return skeleton.zup_to_yup(heads)


def pose_armature(obj: Any, joints: np.ndarray) -> None:
    """Pose an SMPL armature (rotations only, no keys) so its joints match ``joints`` (24, 3) y-up.

    The root stays where it is: only the shape of the pose is previewed.
    """
    if not is_smpl_armature(obj):
        raise errors.InvalidOptionError("the preview needs an SMPL armature: generate one or select it")
    solution = _engine.joint_rotations.solve_rotations(np.asarray(joints, dtype=np.float64)[None],
                                        rest_joints=armature_rest_joints(obj))
    bl_keyframes.set_pose(obj, solution.rotations[0])  # (24, 4); no translation: the root stays
