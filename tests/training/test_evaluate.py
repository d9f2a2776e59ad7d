"""``python -m training evaluate`` end to end on small npz folders made from the golden sequences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from training.errors import EvaluationError
from training.metrics import evaluate
from training.metrics.evaluate import compute_metrics, evaluate_folders

REPO = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = ("fid_k", "fid_g", "div_k", "div_g", "div_k_gt", "div_g_gt", "bas")


def _write_folder(folder: Path, seqs, *, beats=None, fps=60.0, dtype=np.float64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seqs):
        arrays = {"joints": np.asarray(s, dtype=dtype), "fps": np.float32(fps)}
        if beats is not None and beats[i] is not None:
            arrays["music_beats"] = np.asarray(beats[i], dtype=np.int64)
        np.savez(folder / f"dance_{i:03d}.npz", **arrays)
    return folder


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real command line, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "training", "evaluate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """The same dispatcher in-process (no interpreter start-up): (exit code, stdout, stderr)."""
    rc = main(["evaluate", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_cli_on_the_full_golden_set_reproduces_the_official_numbers(golden, tmp_path):
    data, expected = golden
    pred_beats = [expected["music_beats"]] * 10 + [None] * 30  # only the first 10 carry beats
    pred = _write_folder(tmp_path / "pred", data["pred_sequences"], beats=pred_beats)
    gt = _write_folder(tmp_path / "gt", data["gt_sequences"])
    out = tmp_path / "out" / "report.json"
    proc = _run_cli(str(pred), "--gt", str(gt), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    for key in REQUIRED_KEYS:
        assert key in report
    for key in ("fid_k", "fid_g", "div_k", "div_g", "div_k_gt", "div_g_gt"):
        assert report[key] == pytest.approx(expected[key], rel=1e-4), key
    assert report["bas"] == pytest.approx(expected["bas_mean_first10"], rel=1e-4)
    assert report["num_pred"] == 40 and report["num_gt"] == 108 and report["num_pred_with_beats"] == 10
    assert len(report["pred_files"]) == 40 and len(report["gt_files"]) == 108
    assert report["pred_files"][0]["bas"] == pytest.approx(expected["bas_first10"][0], rel=1e-4)
    assert report["pred_files"][10]["bas"] is None
    for side in ("physical_pred", "physical_gt"):
        assert set(report[side]) >= {"pfc", "foot_skating_ratio", "jitter", "mean_joint_speed",
                                     "longest_frozen_s", "ground_contact_ratio"}
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "FID_k" in proc.stdout
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


def test_small_folders_float32_and_function_api(golden, tmp_path, capsys):
    data, expected = golden
    pred = _write_folder(tmp_path / "p", data["pred_sequences"][:6], dtype=np.float32)
    gt = _write_folder(tmp_path / "g", data["gt_sequences"][:12], dtype=np.float32)
    report = evaluate_folders(pred, gt)
    assert report["bas"] is None  # no prediction carries beats
    direct = compute_metrics(list(data["pred_sequences"][:6].astype(np.float32)),
                             list(data["gt_sequences"][:12].astype(np.float32)))
    for key in REQUIRED_KEYS[:-1]:
        assert report[key] == pytest.approx(direct[key], rel=1e-9)
    assert report["warnings"]  # 12 GT sequences cannot support a 72-d covariance: said so
    out = tmp_path / "r.json"
    rc, _, err = _main(capsys, str(pred), "--gt", str(gt), "-o", str(out), "--plot", str(tmp_path / "plot.png"))
    assert rc == 0, err
    assert (tmp_path / "plot.png").exists() and not out.with_suffix(".png").exists()
    assert json.loads(out.read_text())["bas"] is None


def test_compute_metrics_gives_bas_per_prediction(golden):
    data, expected = golden
    preds = list(data["pred_sequences"][:10])
    report = compute_metrics(preds, list(data["gt_sequences"][:20]), [expected["music_beats"]] * 10)
    assert [r["bas"] for r in report["pred_files"]] == pytest.approx(expected["bas_first10"], rel=1e-4)


def test_errors_are_clear_and_write_nothing(golden, tmp_path, capsys):
    data, _ = golden
    gt = _write_folder(tmp_path / "gt", data["gt_sequences"][:4])
    out = tmp_path / "report.json"
    out.write_text("previous report\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = _main(capsys, str(empty), "--gt", str(gt), "-o", str(out))
    assert rc == 2 and "no .npz dance files" in err and "Traceback" not in err

    slow = _write_folder(tmp_path / "slow", data["pred_sequences"][:3, ::2], fps=30.0)
    rc, _, err = _main(capsys, str(slow), "--gt", str(gt), "-o", str(out))
    assert rc == 2 and "30 fps" in err and "--resample" in err
    assert out.read_text() == "previous report\n"

    rc, _, err = _main(capsys, str(slow), "--gt", str(gt), "-o", str(out), "--resample", "--no-plot")
    assert rc == 0, err
    report = json.loads(out.read_text())
    assert report["pred_files"][0]["source_fps"] == 30.0
    assert report["pred_files"][0]["frames"] == 119  # 60 frames at 30 fps -> 59 s/30 * 60 + 1

    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "a.npz", joints=np.zeros((100, 22, 3)), fps=60.0)
    with pytest.raises(EvaluationError, match=r"\(T, 24, 3\)"):
        evaluate.load_folder(bad)
    (bad / "a.npz").write_bytes(b"not a zip")
    with pytest.raises(EvaluationError, match="not a readable"):
        evaluate.load_folder(bad)
    with pytest.raises(EvaluationError, match="at least 2"):
        compute_metrics([data["pred_sequences"][0]], list(data["gt_sequences"][:4]))


def test_cli_lists_evaluate():
    proc = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "evaluate" in proc.stdout


def test_quality_checks_flag_a_frozen_dance(golden):
    data, _ = golden
    frozen = np.repeat(data["pred_sequences"][0][:1], 181, axis=0)  # one pose held for 3 s
    preds = [*data["pred_sequences"][:4], frozen]
    report = compute_metrics(preds, list(data["gt_sequences"][:8]))
    checks = report["quality_checks"]
    assert checks["max_frozen_s"]["value"] == pytest.approx(3.0)
    assert checks["max_frozen_s"]["ok"] is False and checks["all_ok"] is False
    assert report["pred_files"][4]["longest_frozen_s"] == pytest.approx(3.0)
    assert report["pred_files"][0]["longest_frozen_s"] == 0.0
