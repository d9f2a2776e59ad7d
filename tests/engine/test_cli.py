"""The command line's contract, run as users run it (a subprocess): one clear error line and never a
traceback; everything that does not depend on the song checked before any work; nothing written for a
song that fails, and the other songs still done; SIGTERM cleans up like Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine import cli

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "DANCE_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_one_error_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == cli.EXIT_ERROR, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def song(short_song) -> Path:
    return short_song(2.5, name="song")


@pytest.fixture
def generate(tiny_model_dir, tmp_path):
    """``generate(*args)``: ``python -m engine generate *args --model <tiny> -q`` with its own cache folder."""
    def run(*args: str, model: Path = tiny_model_dir, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_cli("generate", *args, "--model", str(model), "-q", cache=tmp_path / "cache", timeout=timeout)

    return run


# --- the song file ----------------------------------------------------------------------------------------
def test_fifo_and_link_to_dev_zero_are_refused_at_once(generate, tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.mp3"
    zero.symlink_to("/dev/zero")
    for path, kind in ((fifo, "named pipe"), (zero, "character device")):
        t0 = time.perf_counter()
        proc = generate(str(path), "-o", str(tmp_path / "out"), timeout=60)  # it used to hash forever
        assert_one_error_line(proc, kind, "not a regular file")
        assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "out").exists()


def test_huge_float_samples_dance(generate, tmp_path):
    y, sr = sf.read(str(REPO / "assets" / "demo_song.ogg"), frames=3 * 22050, dtype="float32")
    sf.write(str(tmp_path / "loud.wav"), y * np.float32(1e30), sr, subtype="FLOAT")
    proc = generate(str(tmp_path / "loud.wav"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert np.isfinite(np.load(tmp_path / "out" / "loud.npz")["joints"]).all()


def test_several_songs_go_on_past_a_bad_one(generate, short_song, tmp_path):
    first, second = short_song(2.5, name="first"), short_song(2.5, name="second", offset=20.0)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    proc = generate(str(first), str(bad), str(second), "-o", str(tmp_path / "out"))
    assert proc.returncode == cli.EXIT_ERROR
    assert "error: bad.wav: " in proc.stderr and "Traceback" not in proc.stderr
    assert "2/3 songs done, 1 failed" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{stem}.{ext}" for stem in ("first", "second") for ext in ("bvh", "json", "npz")]


# --- options and the output folder: checked before any work -------------------------------------------------
def _model_with(tiny_model_dir: Path, folder: Path, edit) -> Path:
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("case, args, words", [
    ("-o is a file", ("-o", "{file}"), ("is a file, not a folder",)),
    ("-o under a file", ("-o", "{file}/sub"), ("is a file, not a folder",)),
    ("no format", ("-o", "{out}", "--formats", ","), ("no output format",)),
    ("unknown format", ("-o", "{out}", "--formats", "npz,fbx"), ("unknown output format", "fbx")),
    ("unknown device", ("-o", "{out}", "--device", "banana"), ("unknown device 'banana'",)),
    ("seed above 2^64", ("-o", "{out}", "--temperature", "1", "--seed", str(2**70)), ("seed must be",)),
    ("start code out of range", ("-o", "{out}", "--start", "9999", "0"), ("out of range",)),
    ("same output names", ("{song2}", "-o", "{out}"), ("would both be written",)),
])
def test_bad_options_fail_before_any_work(generate, song, tmp_path, case, args, words):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "other").mkdir()
    song2 = shutil.copy(song, tmp_path / "other" / song.name)
    values = {"file": tmp_path / "file", "out": tmp_path / "out", "song2": song2}
    proc = generate(str(song), *(a.format(**values) for a in args))
    assert_one_error_line(proc, *words)
    assert not (tmp_path / "out").exists() and (tmp_path / "file").read_text() == "mine"
    assert not (tmp_path / "cache").exists()  # no feature was computed


def test_cuda_without_cuda_is_refused(generate, song, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_error_line(generate(str(song), "-o", str(tmp_path / "out"), "--device", "cuda"), "no CUDA")


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["vqvae"].update(width="64"), ("VQ-VAE config: width must be an integer, got '64'",)),
    (lambda c: c["gpt"].update(n_layer_base=4.5), ("GPT config: n_layer_base must be an integer, got 4.5",)),
    (lambda c: c["gpt"].update(vocab_size_up=10**12), ("vocab_size_up must be between",)),
    (lambda c: c["vqvae"].update(l_bins=10**9), ("l_bins must be between",)),
    (lambda c: c["gpt"].update(n_embd=16384, n_head=8, n_layer_head=512), ("billion parameters",)),
])
def test_bad_model_configs_are_one_line(generate, song, tiny_model_dir, tmp_path, edit, words):
    model = _model_with(tiny_model_dir, tmp_path / "model", edit)
    assert_one_error_line(generate(str(song), "-o", str(tmp_path / "out"), model=model, timeout=60), *words)


def test_nan_weights_are_refused_on_load(generate, song, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    weights = load_file(str(model / "gpt.safetensors"))
    weights["gpt_head.head_up.weight"][3, 5] = float("nan")
    save_file(weights, str(model / "gpt.safetensors"), metadata={"format": "bailando-blender-model",
                                                                  "format_version": "1"})
    proc = generate(str(song), "-o", str(tmp_path / "out"), model=model)
    assert_one_error_line(proc, "gpt.safetensors", "gpt_head.head_up.weight", "NaN")
    assert not (tmp_path / "out").exists()


# --- the file system refuses: read-only, full -----------------------------------------------------------------
def _in_own_mount_namespace(script: str) -> subprocess.CompletedProcess:
    """``script`` (sh) in a private user + mount namespace, where it may mount a tmpfs of its own."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here: {probe.stderr.decode().strip()}")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("mount_options, words", [("ro", ("cannot write in", "Read-only file system")),
                                                  ("size=48k", ("No space left on device",))])
def test_read_only_and_full_disk_are_one_line_and_leave_nothing(tiny_model_dir, song, tmp_path, mount_options,
                                                                 words):
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = _in_own_mount_namespace(
        f"mount -t tmpfs -o {mount_options} tmpfs {disk} || exit 99; "
        f"DANCE_CACHE_DIR={tmp_path / 'cache'} {sys.executable} -m engine generate {song} -o {disk}/out "
        f"--model {tiny_model_dir} -q; echo rc=$? >&2; find {disk} -mindepth 1")
    if "rc=" not in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    error, rc = proc.stderr.strip().splitlines()[-2:]
    assert rc == f"rc={cli.EXIT_ERROR}" and error.startswith("error:") and "Traceback" not in proc.stderr
    for word in words:
        assert word in error
    assert set(proc.stdout.split()) <= {f"{disk}/out"}, proc.stdout  # at most the empty folder, no file


# --- signals -------------------------------------------------------------------------------------------------
def test_sigterm_while_writing_leaves_no_partial_file(tiny_model_dir, song, tmp_path):
    """The BVH writer is made to stall half-way; SIGTERM then must unwind like Ctrl-C."""
    out = tmp_path / "out"
    script = (
        "import sys, time\n"
        "import engine.dance_files as export\n"
        "def stalled(path, *args, **kwargs):\n"
        "    open(path, 'w').write('HIERARCHY half')\n"
        "    time.sleep(120)\n"
        "export.write_bvh = stalled\n"
        "from engine import cli\n"
        f"sys.exit(cli.main(['generate', {str(song)!r}, '-o', {str(out)!r}, '--model', {str(tiny_model_dir)!r},"
        " '-q']))\n"
    )
    env = {**os.environ, "DANCE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out.is_dir() and any(p.suffix == ".bvh" for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    assert all(p.name.startswith(".") and ".partial-" in p.name for p in out.iterdir())
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_TERMINATED, stderr
    assert stderr.startswith("terminated") and "Traceback" not in stderr
    assert list(out.iterdir()) == []


def test_output_files_have_ordinary_permissions(generate, song, tmp_path):
    proc = generate(str(song), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert modes == {f"song.{ext}": 0o666 & ~umask for ext in ("bvh", "json", "npz")}
