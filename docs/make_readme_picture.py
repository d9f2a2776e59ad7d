"""Render the README's picture with the project itself: the default model dancing to the demo song.

    .venv/bin/python docs/make_readme_picture.py [-o docs/dancer.png] [--style indian]

Engine (default model, demo song) -> the add-on's scene (a new SMPL armature with its mannequin body)
-> frames of the MP4 preview (the same stage, camera and caption as ``python -m addon.batch``) at
several moments, rendered with Workbench and set side by side in one PNG.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=REPO / "docs" / "dancer.png")
    parser.add_argument("--moments", type=int, default=3, help="how many moments of the dance to show")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
    parser.add_argument("--style", default="any", help="the style the dance is asked for (to look at one)")
    args = parser.parse_args()

    import bpy
    import numpy as np
    from PIL import Image

    from addon.blender import render_setup
    from addon.ui import core
    from engine.checkpoint import default_model_dir
    from engine.generate import Choreographer, GenerateOptions

    song = REPO / "assets" / "demo_song.ogg"
    dance = Choreographer(default_model_dir()).generate(song, GenerateOptions(fps=30.0, style=args.style))
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    obj = core.apply_dances(scene, [dance], song, with_mesh=True).armature
    frame_range = (scene.frame_start, scene.frame_end)
    # The preview's own set-up (render_setup.render_animation), then stills instead of the video.
    render_setup.configure_mp4(scene, "unused.mp4", engine="WORKBENCH", resolution=tuple(args.size),
                               with_audio=False)
    render_setup.frame_dancer(scene, obj, frame_range)
    render_setup.add_floor(scene, obj, frame_range)
    render_setup.stage_look(scene)
    render_setup.set_caption(scene, render_setup.dance_caption(obj, str(song)))
    scene.display.render_aa = "8"  # a still for the README: the best anti-aliasing, whatever it costs
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.x: a still image, not the video
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    frames = np.linspace(frame_range[1] * 0.2, frame_range[1] * 0.8, args.moments).astype(int)
    stills = []
    with tempfile.TemporaryDirectory() as work:
        for frame in frames:
            scene.frame_set(int(frame))
            scene.render.filepath = str(Path(work) / f"{frame:05d}.png")
            bpy.ops.render.render(write_still=True)
            stills.append(Image.open(scene.render.filepath).convert("RGB"))
    width, height = stills[0].size
    sheet = Image.new("RGB", (width * len(stills), height))
    for i, still in enumerate(stills):
        sheet.paste(still, (i * width, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
