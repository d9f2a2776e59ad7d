"""``python -m addon.batch``: an MP4 (and FBX) per song, a summary line each, exit 1 if any failed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.addon.conftest import needs_audio

pytest.importorskip("bpy")

REPO = Path(__file__).resolve().parents[2]


def run_batch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "addon.batch", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                            "HOME": str(cwd)})


def assert_video_with_song(path: Path, song_seconds: float) -> None:
    """One H.264 video stream and one AAC audio stream, both as long as the song."""
    from tests.addon.mp4info import mp4_streams

    streams = mp4_streams(path)
    assert sorted((s.kind, s.codec) for s in streams) == [("audio", "mp4a"), ("video", "avc1")]
    for stream in streams:  # the dance covers the song to within one token (8 frames at 60 fps)
        assert stream.duration_s == pytest.approx(song_seconds, abs=0.15), stream


@pytest.fixture
def egl():
    from addon.blender.render import egl_available

    if not egl_available():
        pytest.skip("Workbench needs EGL (Mesa: libegl1 libegl-mesa0 libgl1-mesa-dri)")


@needs_audio
@pytest.mark.slow
def test_two_songs_two_videos_and_a_failure_reported(egl, short_song, tiny_model_dir, tmp_path):
    songs = [short_song(2.2, name="first", offset=5.0), short_song(2.2, name="second", offset=20.0)]
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(b"not audio at all" * 64)
    out = tmp_path / "out"
    done = run_batch(str(songs[0]), str(broken), str(songs[1]), "-o", str(out), "--model", str(tiny_model_dir),
                     "--engine", "workbench", "--resolution", "64", "48", "--fps", "24", "--fbx", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # one song failed ...
    for stem in ("first", "second"):  # ... and the others were still done
        assert_video_with_song(out / f"{stem}.mp4", 2.2)
        assert (out / f"{stem}.fbx").stat().st_size > 1000
        assert (out / f"{stem}.wav").is_file()  # the song beside the FBX
    # Blender's C code prints "Info: ..." lines on stdout too; the summary lines are the batch's.
    lines = [line for line in done.stdout.splitlines() if re.match(r"^(\S+\.(wav|ogg): |\d+/\d+ songs)", line)]
    assert lines[0].startswith("first.wav: ok")
    assert lines[1].startswith("broken.ogg: FAILED: ")
    assert lines[2].startswith("second.wav: ok")
    assert lines[-1] == "2/3 songs done, 1 failed"
    assert not list(out.glob("broken.*")) and not list(out.glob(".*"))  # nothing partial left


@needs_audio
@pytest.mark.slow
def test_variations_render_one_video_each(egl, short_song, tiny_model_dir, tmp_path):
    song = short_song(2.2, name="clip")
    out = tmp_path / "out"
    done = run_batch(str(song), "-o", str(out), "--model", str(tiny_model_dir), "--variations", "2",
                     "--resolution", "64", "48", "--fps", "24", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.glob("*.mp4")) == ["clip_v1.mp4", "clip_v2.mp4"]
    for stem in ("clip_v1", "clip_v2"):
        assert_video_with_song(out / f"{stem}.mp4", 2.2)


def test_missing_model_fails_before_any_song(short_song, tmp_path):
    song = short_song(1.0)
    done = run_batch(str(song), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nothing"), cwd=tmp_path)
    assert done.returncode == 1
    assert "no model found at" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # the output folder is made only once the run can start


@pytest.mark.parametrize("option, message", [(("--beat-sync", "-1"), "strength"), (("--max-hold", "-2"), "hold"),
                                             (("--variations", "0"), "variations must be at least 1")])
def test_bad_timing_options_fail_before_any_song(short_song, tiny_model_dir, tmp_path, option, message):
    song = short_song(1.0)
    done = run_batch(str(song), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir), *option, cwd=tmp_path)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # the output folder is made only once the run can start


def test_blender_script_mode_reads_arguments_after_dashes(short_song, tmp_path):
    """``blender -b -P addon/batch.py -- ...``: the file runs as a script and takes argv after ``--``."""
    song = short_song(1.0)
    done = subprocess.run(
        [sys.executable, str(REPO / "addon" / "batch.py"), "-b", "--", str(song), "-o", str(tmp_path / "out"),
         "--model", str(tmp_path / "nothing")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1
    assert "no model found at" in done.stderr and "nothing" in done.stderr


@needs_audio
@pytest.mark.slow
def test_a_duet_renders_both_dancers_into_one_video(egl, short_song, duo_model_dir, tmp_path):
    song = short_song(2.5, name="pair")
    out = tmp_path / "out"
    done = run_batch(str(song), "-o", str(out), "--model", str(duo_model_dir), "--duet",
                     "--resolution", "64", "48", "--fps", "24", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.glob("*.mp4")) == ["pair.mp4"]
    assert_video_with_song(out / "pair.mp4", 2.5)
