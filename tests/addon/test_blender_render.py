"""MP4 renders with the song muxed in, in a child process, on the real bpy module.

Cycles (CPU, 1 sample) needs nothing special; Workbench needs OpenGL through EGL (Mesa) and is
skipped with the reason when the machine lacks it.
"""

from __future__ import annotations

import math

import pytest

from tests.addon.conftest import as_dance, needs_audio

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.usefixtures("fresh_scene")

from mathutils import Vector  # noqa: E402

from addon.blender import armature, keyframes, render, scene  # noqa: E402
from addon.blender.errors import RenderError  # noqa: E402
from engine import skeleton  # noqa: E402
from tests.addon import mp4info  # noqa: E402

FRAMES = 12
FPS = 24


@pytest.fixture
def keyed_scene(dance_factory):
    quats, translation, _ = dance_factory(FRAMES)
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS)
    keyframes.apply_dance(obj, as_dance(quats, translation, FPS), "song")
    return bpy.context.scene, obj


def _check_video(path):
    streams = mp4info.mp4_streams(path)
    assert [s.kind for s in streams].count("video") == 1
    assert [s.kind for s in streams].count("audio") == 1
    video = next(s for s in streams if s.kind == "video")
    audio = next(s for s in streams if s.kind == "audio")
    assert video.codec == "avc1" and audio.codec == "mp4a"  # H.264 + AAC
    assert video.duration_s == pytest.approx(FRAMES / FPS, abs=1e-3)
    assert audio.duration_s == pytest.approx(FRAMES / FPS, abs=0.05)  # AAC frames are ~21 ms


@needs_audio
@pytest.mark.slow
def test_cycles_mp4_with_song(keyed_scene, song_wav, tmp_path):
    sc, obj = keyed_scene
    engine_before = sc.render.engine
    out = render.render_mp4(sc, tmp_path / "dance.mp4", "CYCLES", (64, 48), song_wav, dancer=obj,
                            cycles_samples=1)
    _check_video(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dance.mp4", "my song.wav"]
    # The render ran on a copy: this scene's settings and objects are untouched.
    assert sc.render.engine == engine_before and sc.camera is None
    assert {o.name for o in bpy.data.objects} == {"dancer", "dancer_body"}


@needs_audio
@pytest.mark.slow
def test_workbench_mp4_uses_the_scene_song_strip(keyed_scene, song_wav, tmp_path):
    if not render.egl_available():
        pytest.skip(f"no usable EGL/OpenGL here: Workbench needs Mesa ({render.EGL_PACKAGES})")
    sc, obj = keyed_scene
    scene.load_song(sc, song_wav, set_frame_range=False)
    out = render.render_mp4(sc, tmp_path / "wb.mp4", "WORKBENCH", (64, 48), dancer=obj)
    _check_video(out)


def test_bad_requests_fail_before_rendering(keyed_scene, song_wav, tmp_path):
    sc, obj = keyed_scene
    with pytest.raises(RenderError, match="unknown render engine"):
        render.render_mp4(sc, tmp_path / "x.mp4", "POVRAY", (64, 48))
    with pytest.raises(RenderError, match="Song not found"):
        render.render_mp4(sc, tmp_path / "x.mp4", "CYCLES", (64, 48), tmp_path / "none.wav")
    with pytest.raises(RenderError, match="folder does not exist"):
        render.render_mp4(sc, tmp_path / "no" / "x.mp4", "CYCLES", (64, 48))
    assert list(tmp_path.iterdir()) == [song_wav]


def test_a_crashing_render_becomes_a_render_error(keyed_scene, tmp_path):
    # No dancer and no camera: the child process fails; the caller gets a clear error, no file.
    sc, _ = keyed_scene
    with pytest.raises(RenderError, match="no camera"):
        render.render_mp4(sc, tmp_path / "x.mp4", "CYCLES", (64, 48))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_workbench_without_egl_is_an_error_not_a_crash(keyed_scene, tmp_path, monkeypatch):
    # Hide Mesa's EGL vendor from the child: Workbench then aborts (SIGABRT) in the child only.
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_FILENAMES", str(tmp_path / "no_vendor.json"))
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_DIRS", str(tmp_path))
    sc, obj = keyed_scene
    with pytest.raises(RenderError, match=r"WORKBENCH render process crashed \((SIGABRT|SIGSEGV)\).*EGL"):
        render.render_mp4(sc, tmp_path / "x.mp4", "WORKBENCH", (64, 48), dancer=obj)
    assert list(tmp_path.iterdir()) == []


def _view_extents(sc, obj, camera, every: int = 3) -> list[tuple[float, float, float, float]]:
    """(min x, max x, min y, max y) of the bones in the camera's normalised view, frame by frame."""
    from bpy_extras.object_utils import world_to_camera_view

    out = []
    for frame in range(sc.frame_start, sc.frame_end + 1, every):
        sc.frame_set(frame)
        points = [world_to_camera_view(sc, camera, obj.matrix_world @ p)
                  for b in obj.pose.bones for p in (b.head, b.tail)]
        out.append((min(p.x for p in points), max(p.x for p in points),
                    min(p.y for p in points), max(p.y for p in points)))
    return out


def test_follow_camera_keeps_a_travelling_dancer_large_and_in_view(dance_factory):
    import numpy as np

    from addon.blender import render_setup

    quats, translation, _ = dance_factory(240)
    translation = translation.copy()
    translation[:, 0] = np.linspace(-2.5, 2.5, 240)  # crosses 5 m of floor in 4 s
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS)
    keyframes.apply_dance(obj, as_dance(quats, translation, 60), "travel")
    sc = bpy.context.scene
    sc.render.resolution_x, sc.render.resolution_y = 640, 360

    heights = {}
    for follow in (False, True):
        camera = render_setup.frame_dancer(sc, obj, (sc.frame_start, sc.frame_end), follow=follow)
        extents = _view_extents(sc, obj, camera)
        for lo_x, hi_x, lo_y, hi_y in extents:  # the whole body in the picture on every frame
            assert 0.0 <= lo_x and hi_x <= 1.0 and 0.0 <= lo_y and hi_y <= 1.0
        heights[follow] = float(np.median([hi_y - lo_y for *_, lo_y, hi_y in extents]))
        assert (camera.animation_data is not None) == follow  # keyed only when following
    assert heights[True] >= 1.4 * heights[False], heights  # the body fills much more of the frame
    assert heights[True] >= 0.5  # the bones alone span half the picture (0.35 before the camera fitted them)
    # From the front three-quarters: in front of the dancer (who faces -y), 25-45 degrees to the side.
    forward = camera.matrix_world.to_3x3() @ Vector((0.0, 0.0, -1.0))
    side_angle = math.degrees(math.atan2(abs(forward.x), abs(forward.y)))
    assert forward.y > 0 and 25 <= side_angle <= 45, (forward, side_angle)
    assert forward.z < 0  # from a little above


def test_the_stage_floor_lies_under_the_soles_and_the_whole_path(dance_factory):
    import numpy as np

    from addon.blender import render_setup

    quats, translation, _ = dance_factory(120)
    translation = translation.copy()
    translation[:, 0] = np.linspace(-1.5, 1.5, 120)
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS)
    keyframes.apply_dance(obj, as_dance(quats, translation, 60), "travel")
    sc = bpy.context.scene
    for _ in range(2):  # a second render's floor replaces the first
        floor = render_setup.add_floor(sc, obj, (sc.frame_start, sc.frame_end))
    assert [o.name for o in bpy.data.objects if o.name.startswith(render_setup.FLOOR_NAME)] == [floor.name]
    corners = np.array([v.co[:] for v in floor.data.vertices])
    assert np.all(corners[:, 2] == 0.0)  # z = 0: where the engine puts the soles
    lo, hi = render_setup.dancer_bounds(sc, obj, (sc.frame_start, sc.frame_end))
    assert corners[:, 0].min() <= lo.x - 4 and corners[:, 0].max() >= hi.x + 4
    assert corners[:, 1].min() <= lo.y - 4 and corners[:, 1].max() >= hi.y + 4
    tiles = np.array([p.material_index for p in floor.data.polygons])
    assert set(tiles) == {0, 1} and abs(tiles.mean() - 0.5) < 0.05  # a checkerboard of two tones
    assert len(floor.data.materials) == 2


def test_the_caption_says_song_style_and_model(keyed_scene):
    from addon.blender import render_setup

    sc, obj = keyed_scene
    assert render_setup.dance_caption(obj, "/music/my song.wav") == "my song"  # an action the add-on did not tag
    render_setup.tag_action(obj.animation_data.action, {"style": None, "model": "default"})
    assert render_setup.dance_caption(obj, "/music/my song.wav") == "my song  ·  style: any  ·  model: default"
    render_setup.set_caption(sc, "my song  ·  style: any")
    render = sc.render
    assert render.use_stamp and render.use_stamp_note and render.stamp_note_text == "my song  ·  style: any"
    assert not render.use_stamp_frame and not render.use_stamp_date and not render.use_stamp_render_time


def test_workbench_draws_each_frame_once_with_fxaa(keyed_scene, tmp_path):
    """Workbench's default 8-sample anti-aliasing draws every frame 8 times; on software OpenGL that doubled
    the demo render (44.3 s vs 20.7 s for 10 s of song). The video settings ask for FXAA; Cycles is left alone."""
    from addon.blender import render_setup

    sc, _ = keyed_scene
    render_setup.configure_mp4(sc, str(tmp_path / "a.mp4"), engine="WORKBENCH", resolution=(64, 48),
                               with_audio=False)
    assert sc.display.render_aa == "FXAA"
    sc.display.render_aa = "8"
    render_setup.configure_mp4(sc, str(tmp_path / "b.mp4"), engine="CYCLES", resolution=(64, 48), with_audio=False)
    assert sc.display.render_aa == "8"


def test_a_couple_is_framed_together(dance_factory):
    import numpy as np

    from addon.blender import render_setup

    quats, translation, _ = dance_factory(120)
    first = armature.create_smpl_armature("lead", skeleton.REST_JOINTS)
    keyframes.apply_dance(first, as_dance(quats, translation, 60), "lead")
    second = armature.create_smpl_armature("follow", skeleton.REST_JOINTS)
    apart = translation.copy()
    apart[:, 0] += 1.5  # 1.5 m to his side
    keyframes.apply_dance(second, as_dance(quats, apart, 60), "follow")
    sc = bpy.context.scene
    sc.render.resolution_x, sc.render.resolution_y = 640, 360
    camera = render_setup.frame_dancer(sc, [first, second], (sc.frame_start, sc.frame_end))
    for obj in (first, second):  # both whole in the picture on every frame
        for lo_x, hi_x, lo_y, hi_y in _view_extents(sc, obj, camera):
            assert 0.0 <= lo_x and hi_x <= 1.0 and 0.0 <= lo_y and hi_y <= 1.0
    floor = render_setup.add_floor(sc, [first, second], (sc.frame_start, sc.frame_end))
    xs = np.array([v.co.x for v in floor.data.vertices])
    assert xs.max() > 1.5 + 4  # under both
