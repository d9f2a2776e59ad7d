"""The Generate operator on the real bpy module, the add-on enabled from the repository.

What the animator sees: a new action named after the song, keyed every frame on every bone, the song
as a sound strip, one undo step; cancel and failure leave the scene exactly as it was.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon.blender import compat  # noqa: E402
from addon.ui import jobs  # noqa: E402
from engine.skeleton import JOINT_NAMES  # noqa: E402
from tests.addon.conftest import needs_audio  # noqa: E402


@pytest.fixture
def scene(ui_scene):
    return ui_scene


def scene_state(scene) -> dict:
    """Everything a generation may change."""
    return {
        "objects": sorted(o.name for o in bpy.data.objects),
        "actions": sorted(a.name for a in bpy.data.actions),
        "armatures": len(bpy.data.armatures),
        "meshes": len(bpy.data.meshes),
        "strips": None if scene.sequence_editor is None else len(compat.sequencer_strips(scene)),
        "frames": (scene.frame_start, scene.frame_end, scene.frame_current),
        "fps": (scene.render.fps, scene.render.fps_base),
    }


def fcurves_of(obj):
    return compat.action_fcurves(obj.animation_data.action, obj)


def undo():
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window, screen=window.screen):
        bpy.ops.ed.undo()


def test_generate_keys_new_action_and_undo_removes_it(scene, short_song):
    song = short_song(3.0, name="hungarian clip")
    scene.dance.song_path = str(song)
    scene.dance.fps = "30"
    before = scene_state(scene)

    # 'EXEC_DEFAULT', True: run as the UI does, with an undo push when it finishes.
    assert bpy.ops.dance.generate("EXEC_DEFAULT", True) == {"FINISHED"}

    obj = scene.dance.armature
    assert obj is not None and obj.type == "ARMATURE"
    action = obj.animation_data.action
    assert action.name == "hungarian clip"
    frames = scene.frame_end - scene.frame_start + 1
    assert frames >= 2.5 * 30  # the dance covers the song (3 s at 30 fps, token-rounded)
    curves = {(fc.data_path, fc.array_index): fc for fc in fcurves_of(obj)}
    for name in JOINT_NAMES:
        for i in range(4):
            fc = curves[(f'pose.bones["{name}"].rotation_quaternion', i)]
            keys = np.zeros(2 * len(fc.keyframe_points))
            fc.keyframe_points.foreach_get("co", keys)
            assert np.array_equal(keys[0::2], np.arange(scene.frame_start, scene.frame_end + 1))
    # The pelvis moves: its location curves are not constant.
    pelvis = [curves[('pose.bones["pelvis"].location', i)] for i in range(3)]
    spread = [np.ptp([fc.evaluate(f) for f in range(scene.frame_start, scene.frame_end + 1)]) for fc in pelvis]
    assert max(spread) > 1e-3
    if compat.has_audio():
        strip = compat.sequencer_strips(scene)["song"]
        assert bpy.path.abspath(strip.sound.filepath) == str(song)
    assert (scene.render.fps, scene.render.fps_base) == (30, 1.0)

    undo()
    assert scene_state(bpy.context.scene) == before


def test_timing_settings_reach_the_engine(scene, short_song, monkeypatch):
    from addon.ui import core

    seen = []
    original = core.generate_dances

    def spy(model_dir, device, song, options_list, **kwargs):
        seen.extend(options_list)
        return original(model_dir, device, song, options_list, **kwargs)

    monkeypatch.setattr(core, "generate_dances", spy)
    scene.dance.song_path = str(short_song(2.0, name="clip"))
    scene.dance.beat_sync = 0.4
    scene.dance.max_hold = 1.2
    assert bpy.ops.dance.generate("EXEC_DEFAULT", True) == {"FINISHED"}
    (options,) = seen
    assert options.beat_sync.strength == pytest.approx(0.4)
    assert options.sampling.max_repeat == 9  # 1.2 s at 7.5 codes a second
    scene.dance.max_hold = 0.0  # no limit, as the official sampler
    seen.clear()
    assert bpy.ops.dance.generate("EXEC_DEFAULT", True) == {"FINISHED"}
    assert seen[0].sampling.max_repeat is None
    # decoding: left to the model by default, else greedy or sampled as set; the foot lock and style strength
    assert seen[0].sampling.greedy is None and seen[0].sampling.seed is None and seen[0].lock_feet is True
    assert seen[0].sampling.style_guidance is None  # 0 in the panel: the model's own
    scene.dance.decoding, scene.dance.lock_feet, scene.dance.style_guidance = "GREEDY", False, 3.0
    seen.clear()
    assert bpy.ops.dance.generate("EXEC_DEFAULT", True) == {"FINISHED"}
    assert seen[0].sampling.greedy is True and seen[0].lock_feet is False and seen[0].sampling.style_guidance == 3.0
    scene.dance.decoding, scene.dance.temperature, scene.dance.seed = "SAMPLE", 0.7, 3
    seen.clear()
    assert bpy.ops.dance.generate("EXEC_DEFAULT", True) == {"FINISHED"}
    sampling = seen[0].sampling
    assert (sampling.greedy, sampling.temperature, sampling.seed) == (False, pytest.approx(0.7), 3)


def test_the_style_menu_offers_the_models_styles_and_reaches_the_engine(scene, enabled, styled_model_dir,
                                                                       tiny_model_dir, short_song, monkeypatch):
    from addon.ui import core, props

    def menu() -> list[str]:  # what Blender asks the dynamic menu for when it draws it
        return [identifier for identifier, _, _ in props.style_items(scene.dance, bpy.context)]

    assert menu() == ["any"]  # the tiny model has no styles
    enabled.model_dir = str(styled_model_dir)
    assert menu() == ["any", "salsa", "ballet"]
    seen = []
    original = core.generate_dances

    def spy(model_dir, device, song, options_list, **kwargs):
        seen.extend(options_list)
        dances = original(model_dir, device, song, options_list, **kwargs)
        seen.extend(dances)
        return dances

    monkeypatch.setattr(core, "generate_dances", spy)
    scene.dance.song_path = str(short_song(2.0, name="clip"))
    scene.dance.style = "ballet"
    assert scene.dance.style == "ballet"
    assert bpy.ops.dance.generate("EXEC_DEFAULT", True) == {"FINISHED"}
    options, dance = seen
    assert options.style == "ballet" and dance.meta["style"] == "ballet"
    assert (int(dance.codes_up[0]), int(dance.codes_down[0])) == (5, 7)  # the style's own start pose
    # The action records its style and model: the rendered preview's caption says them.
    from addon.blender import render_setup

    obj = scene.dance.armature
    assert render_setup.dance_caption(obj, scene.dance.song_path) == (
        f"clip  ·  style: ballet  ·  model: {dance.meta['model']}")
    enabled.model_dir = str(tiny_model_dir)  # a model without the chosen style: the menu falls back to "any"
    assert menu() == ["any"]


def test_generate_twice_never_overwrites(scene, short_song):
    scene.dance.song_path = str(short_song(2.0, name="clip"))
    assert bpy.ops.dance.generate() == {"FINISHED"}
    first = scene.dance.armature
    first["marker"] = 1
    scene.dance.target = "SELECTED"
    scene.dance.preset = "SMPL"
    bpy.context.view_layer.objects.active = first
    assert bpy.ops.dance.generate() == {"FINISHED"}
    assert sorted(a.name for a in bpy.data.actions) == ["clip", "clip.001"]
    assert first.animation_data.action.name == "clip.001"


def test_the_users_own_action_survives_save_and_reload(scene, short_song, tmp_path):
    """Generating onto the user's rig replaces its active action; the user's hand-keyed action is stashed
    in the NLA (muted), so it is still in the file, with every key, after saving and reopening."""
    from tests.addon.test_blender_rigmap import make_mixamo_rig

    rig, _ = make_mixamo_rig()
    bone = rig.pose.bones["mixamorig:LeftForeArm"]
    bone.rotation_mode = "QUATERNION"
    for frame, angle in ((1, 0.0), (12, 0.8), (24, 0.0)):
        bone.rotation_quaternion = (np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0)
        bone.keyframe_insert("rotation_quaternion", frame=frame)
    mine = rig.animation_data.action
    mine.name = "my hand-keyed"
    keys_before = sorted((fc.array_index, tuple(k.co)) for fc in fcurves_of(rig) for k in fc.keyframe_points)
    assert len(keys_before) == 12 and mine.users == 1 and not mine.use_fake_user

    scene.dance.song_path = str(short_song(2.0, name="clip"))
    scene.dance.target = "SELECTED"
    scene.dance.preset = "Mixamo"
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.dance.generate() == {"FINISHED"}
    assert rig.animation_data.action.name == "clip"
    stash = [t for t in rig.animation_data.nla_tracks if t.name == "[Action Stash]"]
    assert len(stash) == 1 and stash[0].mute and stash[0].strips[0].action == mine

    path, rig_name = tmp_path / "scene.blend", rig.name
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    kept = bpy.data.actions["my hand-keyed"]
    strip = bpy.data.objects[rig_name].animation_data.nla_tracks["[Action Stash]"].strips[0]
    assert strip.action == kept
    curves = compat.action_fcurves(kept)
    assert sorted((fc.array_index, tuple(k.co)) for fc in curves for k in fc.keyframe_points) == keys_before


def test_variations_make_one_action_per_seed(scene, short_song):
    scene.dance.song_path = str(short_song(2.0, name="clip"))
    assert bpy.ops.dance.generate(variations=2) == {"FINISHED"}
    obj = scene.dance.armature
    actions = {a.name: a for a in bpy.data.actions}
    assert sorted(actions) == ["clip v1", "clip v2"]
    assert actions["clip v1"].use_fake_user  # kept although only v2 is assigned
    assert obj.animation_data.action == actions["clip v2"]
    # Different seeds, different dances: compare the left knee's keys of both actions.
    def knee_keys(action):
        (fc,) = [c for c in compat.action_fcurves(action)
                 if c.data_path == 'pose.bones["l_knee"].rotation_quaternion' and c.array_index == 1]
        keys = np.zeros(2 * len(fc.keyframe_points))
        fc.keyframe_points.foreach_get("co", keys)
        return keys[1::2]

    assert not np.allclose(knee_keys(actions["clip v1"]), knee_keys(actions["clip v2"]))


def test_cancel_leaves_scene_unchanged(scene, short_song, capsys):
    scene.dance.song_path = str(short_song(3.0))
    before = scene_state(scene)

    def press_cancel():  # the panel's Cancel button, as soon as the job runs
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if jobs.cancel_active():  # what DANCE_OT_cancel does (no bpy calls off the main thread)
                return
            time.sleep(0.001)

    canceller = threading.Thread(target=press_cancel)
    canceller.start()
    result = bpy.ops.dance.generate("EXEC_DEFAULT", True)
    canceller.join()
    assert result == {"CANCELLED"}
    assert scene_state(scene) == before
    assert bpy.context.window_manager.dance_job.status == "Cancelled"
    assert jobs.active() is None  # the next generation may start


def test_non_audio_file_fails_cleanly(scene, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio\n" * 100)
    scene.dance.song_path = str(fake)
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="Generation failed: .*"):
        bpy.ops.dance.generate("EXEC_DEFAULT", True)
    assert scene_state(scene) == before


def test_missing_model_fails_cleanly(scene, enabled, short_song, tmp_path):
    scene.dance.song_path = str(short_song(2.0))
    enabled.model_dir = str(tmp_path / "no_model_here")
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="no model found at .*no_model_here.*choose a model folder"):
        bpy.ops.dance.generate("EXEC_DEFAULT", True)
    assert scene_state(scene) == before


def test_missing_song_is_reported(scene):
    with pytest.raises(RuntimeError, match="choose a song first"):
        bpy.ops.dance.generate()


def test_a_pipe_or_a_device_as_the_song_is_named_as_such_at_once(scene, tmp_path):
    """Not "song not found", and no hang: the engine's check of the file's kind."""
    fifo = tmp_path / "pipe.ogg"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.wav"
    zero.symlink_to("/dev/zero")
    for path, kind in ((fifo, r"named pipe \(FIFO\)"), (zero, "character device")):
        scene.dance.song_path = str(path)
        with pytest.raises(RuntimeError, match=f"{kind}, not a regular file"):
            bpy.ops.dance.generate()
        with pytest.raises(RuntimeError, match=f"{kind}, not a regular file"):
            bpy.ops.dance.load_song(filepath=str(path))
    assert scene.sequence_editor is None or len(compat.sequencer_strips(scene)) == 0


def test_a_blender_without_audio_still_gets_the_dance(scene, short_song, monkeypatch, capsys):
    """The PyPI bpy 4.2 build has no Audaspace: the dance is keyed all the same, the frame range and
    rate follow it, and the report says the song was not added."""
    from addon.blender import compat

    monkeypatch.setattr(compat, "has_audio", lambda: False)
    scene.dance.song_path = str(short_song(2.0, name="clip"))
    scene.dance.fps = "30"
    assert bpy.ops.dance.generate() == {"FINISHED"}
    assert scene.dance.armature.animation_data.action.name == "clip"
    assert scene.sequence_editor is None or len(compat.sequencer_strips(scene)) == 0
    assert (scene.render.fps, scene.frame_start) == (30, 1) and scene.frame_end >= 55
    assert "the song was not added" in capsys.readouterr().out


@needs_audio
def test_load_song_sets_strip_and_range(scene, short_song):
    song = short_song(2.0)
    scene.dance.fps = "24"
    assert bpy.ops.dance.load_song(filepath=str(song)) == {"FINISHED"}
    assert scene.dance.song_path == str(song)
    assert scene.render.fps == 24
    assert scene.frame_end - scene.frame_start + 1 == pytest.approx(48, abs=1)
    assert compat.strip_duration(compat.sequencer_strips(scene)["song"]) == pytest.approx(48, abs=1)


def test_rig_without_the_presets_bones_fails_before_the_engine_runs(scene, short_song):
    scene.dance.song_path = str(short_song(2.0))
    bpy.ops.object.armature_add()  # one bone named "Bone": not a Mixamo rig
    scene.dance.target = "SELECTED"
    scene.dance.preset = "Mixamo"
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="has no bones named Hips.*mixamo.*pick another preset"):
        bpy.ops.dance.generate("EXEC_DEFAULT", True)
    assert scene_state(scene) == before
    assert jobs.active() is None  # refused before a job started


def test_export_fbx_and_bvh_with_the_song_beside(scene, short_song, tmp_path):
    song = short_song(2.0, name="clip")
    scene.dance.song_path = str(song)
    assert bpy.ops.dance.generate() == {"FINISHED"}
    out = tmp_path / "out"
    out.mkdir()
    assert bpy.ops.dance.export_fbx(filepath=str(out / "dance.fbx")) == {"FINISHED"}
    assert bpy.ops.dance.export_bvh(filepath=str(out / "dance.bvh")) == {"FINISHED"}
    assert (out / "dance.fbx").stat().st_size > 1000
    bvh = (out / "dance.bvh").read_text()
    frames = scene.frame_end - scene.frame_start + 1
    assert f"Frames: {frames}" in bvh
    assert (out / "dance.wav").read_bytes() == song.read_bytes()


@pytest.mark.slow
@needs_audio
def test_render_preview_writes_an_mp4_with_the_song(scene, short_song, tmp_path):
    from addon.blender.render import egl_available

    if not egl_available():
        pytest.skip("Workbench needs EGL (Mesa: libegl1 libegl-mesa0 libgl1-mesa-dri)")
    scene.dance.song_path = str(short_song(2.0, name="clip"))
    scene.dance.fps = "24"
    assert bpy.ops.dance.generate() == {"FINISHED"}
    scene.dance.render_width, scene.dance.render_height = 48, 32
    before = scene_state(scene)
    assert bpy.ops.dance.render_preview(filepath=str(tmp_path / "preview.mp4")) == {"FINISHED"}
    data = (tmp_path / "preview.mp4").read_bytes()
    assert b"ftyp" in data[:64] and b"avc1" in data and b"mp4a" in data  # H.264 video + AAC song
    assert scene_state(scene) == before  # the camera and light live in the render's copy only
