"""Render the README's picture with the project itself: the default model dancing to the demo song.

    .venv/bin/python docs/make_readme_picture.py [-o docs/dancer.png]

Engine (default model, demo song) -> a new SMPL armature with its body mesh (the add-on's Blender
layer) -> a strip of poses at several moments, rendered with Workbench into one PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=REPO / "docs" / "dancer.png")
    parser.add_argument("--poses", type=int, default=6, help="how many moments of the dance to show")
    args = parser.parse_args()

    import bpy
    import numpy as np
    from mathutils import Vector

    from addon.blender import armature, keyframes, render_setup
    from engine.checkpoint import default_model_dir
    from engine.generate import Choreographer, GenerateOptions

    dance = Choreographer(default_model_dir()).generate(REPO / "assets" / "demo_song.ogg", GenerateOptions(fps=30.0))
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    # One dancer per moment, side by side (x), each keyed with the whole dance and shown at its moment
    # through a time offset of its action: a contact strip of the choreography in one still.
    frames = np.linspace(dance.num_frames * 0.15, dance.num_frames * 0.85, args.poses).astype(int)
    for i, frame in enumerate(frames):
        obj = armature.create_smpl_armature(f"dancer{i}", dance.rest_joints, with_mesh=True)
        keyframes.apply_dance(obj, dance, f"demo_{i}", frame_start=1 - int(frame) + 1)
        obj.location.x += 0.9 * i - float(dance.joints[frame, 0, 0])  # line them up, pelvis over x = 0.9 i
        obj.location.y -= -float(dance.joints[frame, 0, 2])  # y-up z (forward) is Blender -y
    scene.frame_set(1)
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = 1200, 400
    scene.render.image_settings.file_format = "PNG"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "OBJECT"
    for i, obj in enumerate(o for o in scene.objects if o.type == "MESH"):
        obj.color = (0.25 + 0.1 * (i % 3), 0.45, 0.8 - 0.08 * i, 1.0)
    dancer = next(o for o in scene.objects if o.type == "ARMATURE")
    render_setup.frame_dancer(scene, dancer, (1, 1))  # camera and light of the add-on's renders
    camera = scene.camera
    # Re-aim at the whole row: from the front, far enough back to see every dancer head to toe.
    span = 0.9 * (args.poses - 1)
    target = Vector((span / 2.0, 0.0, 0.9))
    camera.location = target + Vector((0.0, -1.0, 0.12)).normalized() * max(6.5, 1.2 * span)
    camera.rotation_quaternion = (target - camera.location).to_track_quat("-Z", "Y")
    scene.render.filepath = str(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.render.render(write_still=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
