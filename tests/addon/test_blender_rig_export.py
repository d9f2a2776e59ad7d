"""FBX/BVH export on the real bpy module: FBX round trip within 1e-4 m, song beside, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.addon.conftest import as_dance

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.usefixtures("fresh_scene")

from addon.blender import armature, keyframes  # noqa: E402
from addon.blender import rig_export as export  # noqa: E402
from addon.blender.errors import ExportError  # noqa: E402
from engine import skeleton  # noqa: E402


@pytest.fixture
def keyed_armature(dance):
    quats, translation, _ = dance
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS)
    keyframes.apply_dance(obj, as_dance(quats, translation, 60), "song")
    return obj


def _heads(obj, frame: int) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    return np.array([obj.matrix_world @ obj.pose.bones[n].head for n in skeleton.JOINT_NAMES])


def test_fbx_round_trip_matches_the_armature(keyed_armature, song_wav, tmp_path):
    out = export.export_fbx(keyed_armature, tmp_path / "dance.fbx", song_path=song_wav)
    assert out == (tmp_path / "dance.fbx").resolve() and out.stat().st_size > 10_000
    assert (tmp_path / "dance.wav").read_bytes() == song_wav.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dance.fbx", "dance.wav", "my song.wav"]

    expected = {f: _heads(keyed_armature, f) for f in (1, 30, 77, 120)}
    before = set(bpy.data.objects)
    bpy.ops.import_scene.fbx(filepath=str(out), anim_offset=0)
    imported = [o for o in bpy.data.objects if o not in before and o.type == "ARMATURE"]
    assert len(imported) == 1
    reimported = imported[0]
    assert {b.name for b in reimported.data.bones} == set(skeleton.JOINT_NAMES)  # no leaf bones
    for frame, want in expected.items():
        err = np.abs(_heads(reimported, frame) - want).max()
        assert err < 1e-4, f"frame {frame}: FBX round-trip error {err:.2e} m"


def test_bvh_has_every_frame_and_the_song(keyed_armature, song_wav, tmp_path):
    out = export.export_bvh(keyed_armature, tmp_path / "dance", song_path=song_wav)
    assert out.name == "dance.bvh" and (tmp_path / "dance.wav").is_file()
    text = out.read_text()
    assert text.count("JOINT ") + text.count("ROOT ") == 24
    header, motion = text.split("MOTION", 1)
    lines = motion.strip().splitlines()
    assert lines[0].split() == ["Frames:", "120"]
    assert float(lines[1].split()[-1]) == pytest.approx(1 / 60, rel=1e-4)
    values = np.array([line.split() for line in lines[2:]], dtype=np.float64)
    # root: 6 channels, the 23 others: 3 (rotation only, root_transform_only)
    assert values.shape == (120, 6 + 23 * 3)
    assert np.ptp(values[:, :3], axis=0).max() > 0.1  # the root travels


def test_failed_export_writes_nothing(keyed_armature, tmp_path):
    with pytest.raises(ExportError, match="folder does not exist"):
        export.export_fbx(keyed_armature, tmp_path / "nope" / "dance.fbx")
    with pytest.raises(ExportError, match="Song not found"):
        export.export_fbx(keyed_armature, tmp_path / "dance.fbx", song_path=tmp_path / "missing.wav")
    mesh = keyed_armature.children[0]
    with pytest.raises(ExportError, match="not an armature"):
        export.export_bvh(mesh, tmp_path / "dance.bvh")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_whole(keyed_armature, tmp_path):
    target = tmp_path / "dance.fbx"
    target.write_bytes(b"old")
    export.export_fbx(keyed_armature, target, include_meshes=False)
    assert target.read_bytes()[:18] == b"Kaydara FBX Binary"
    assert [p.name for p in tmp_path.iterdir()] == ["dance.fbx"]  # no temporary left behind
