"""Evaluate a folder of generated dances against a folder of ground-truth dances.

``python -m training evaluate PRED_DIR --gt GT_DIR -o REPORT.json`` writes a JSON report and a PNG
plot next to it (``REPORT.png`` unless ``--plot`` says otherwise).

Input: each folder holds ``.npz`` files in the engine's output format: ``joints`` (T, 24, 3) (or
(T, 72)) world positions in metres, y-up, SMPL order; ``fps`` (must be 60); prediction files may
carry ``music_beats`` (frame indices at 60 fps). Hidden files (``.partial-*``) are ignored.

Protocol (Bailando's ``metrics_new.py`` / ``beat_align_score.py``, see ``training.metrics``):
  * GT features from the whole GT sequences, prediction features from their first 1200 frames (20 s);
    both zero-started (first-frame root subtracted) before feature extraction;
  * FID_k / FID_g and Div_k / Div_g on features normalised by the GT set's mean and std;
  * BAS on the whole predicted sequence against its ``music_beats``; the mean over the files that carry
    beats (null when none do);
  * physical metrics (``training.metrics.physical``) per file, averaged per set, and the quality checks
    of the default-model acceptance criteria (``quality_checks``).

Frame rate: the metrics are defined at 60 fps (``frame_time = 1/60`` is baked into the kinetic
features and BAS's sigma is 3 frames), so a file at another rate is refused unless ``resample=True``
(``--resample``), which linearly interpolates it to 60 fps, as Lodge did for its 30 fps model; the
report then lists the original rate per file. ``music_beats`` are always read as 60 fps frame indices.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.clock import MOTION_FPS
from engine.files import atomic_files
from training.errors import EvaluationError

from .beats import beat_align_score
from .features import extract_motion_features
from .fid import fid_and_diversity
from .physical import physical_metrics, resample_linear

PRED_MAX_FRAMES = 1200  # predictions are scored on their first 20 s
MIN_FRAMES = 4
MIN_FILES = 2  # covariance and pairwise diversity need two sequences at least

# Acceptance criteria of a generated dance against real ones (speed within 0.5-1.5x, feet that skate at
# most 1.5x and touch the floor at least 0.75x as often, a floor that stays within 10 cm, no freeze
# longer than 2 s), checked in ``quality_checks`` and reported by the model card.
SPEED_RATIO_RANGE = (0.5, 1.5)
MAX_SKATING_RATIO_VS_GT = 1.5
MIN_CONTACT_RATIO_VS_GT = 0.75
MAX_FLOOR_RANGE_M = 0.10
MAX_FROZEN_S = 2.0

PHYSICAL_KEYS = (
    "mean_joint_speed", "foot_skating_ratio", "ground_contact_ratio", "floor_range_m", "jitter",
    "longest_frozen_s", "pfc",
)


PHYSICAL_TITLES = {
    "mean_joint_speed": "mean joint speed [m/s]",
    "foot_skating_ratio": "foot-skating ratio (lower)",
    "ground_contact_ratio": "ground-contact ratio",
    "floor_range_m": "floor range [m] (lower)",
    "jitter": "jitter, mean jerk [m/s^3]",
    "longest_frozen_s": "longest frozen stretch [s]",
    "pfc": "PFC, EDGE (lower)",
}




@dataclass
class DanceFile:
    """One loaded dance: joints (T, 24, 3) float64 at 60 fps, beats (60 fps frames) or None."""

    name: str
    joints: np.ndarray
    music_beats: np.ndarray | None = None
    source_fps: float = MOTION_FPS


# --- loading -----------------------------------------------------------------------------------------
def load_dance_file(path: str | Path, *, resample: bool = False) -> DanceFile:
    """Read one ``.npz`` dance, checking shape, finiteness and frame rate."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EvaluationError(f"{path}: not a readable .npz file ({exc})") from exc
    if "joints" not in arrays:
        raise EvaluationError(f"{path}: no 'joints' array (found {sorted(arrays)}); expected (T, 24, 3)")
    joints = np.asarray(arrays["joints"], dtype=np.float64)
    if joints.ndim == 2 and joints.shape[1] == 72:
        joints = joints.reshape(-1, 24, 3)
    if joints.ndim != 3 or joints.shape[1:] != (24, 3):
        raise EvaluationError(f"{path}: 'joints' has shape {joints.shape}; expected (T, 24, 3) or (T, 72)")
    if not np.isfinite(joints).all():
        raise EvaluationError(f"{path}: 'joints' contains NaN or infinite values")
    if "fps" not in arrays:
        raise EvaluationError(f"{path}: no 'fps' value; add fps=60 to the file")
    fps = float(np.asarray(arrays["fps"]).reshape(-1)[0])
    if not fps > 0:
        raise EvaluationError(f"{path}: fps must be positive, got {fps}")
    if abs(fps - MOTION_FPS) > 1e-3:
        if not resample:
            raise EvaluationError(
                f"{path}: {fps:g} fps, but the metrics are defined at 60 fps; resample the dance to 60 fps "
                "or pass --resample (resample=True) to interpolate it linearly"
            )
        joints = resample_linear(joints, fps, MOTION_FPS)
    if joints.shape[0] < MIN_FRAMES:
        raise EvaluationError(f"{path}: {joints.shape[0]} frames; at least {MIN_FRAMES} are needed")
    beats = None
    if "music_beats" in arrays:
        beats = np.asarray(arrays["music_beats"]).reshape(-1)
        if beats.size and not np.issubdtype(beats.dtype, np.number):
            raise EvaluationError(f"{path}: 'music_beats' must hold frame numbers")
        beats = np.round(beats).astype(np.int64)
    return DanceFile(name=path.name, joints=joints, music_beats=beats, source_fps=fps)


def load_folder(folder: str | Path, *, resample: bool = False) -> list[DanceFile]:
    """Every ``.npz`` dance of a folder (sorted by name; hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))
    if not paths:
        raise EvaluationError(f"{folder}: no .npz dance files found")
    return [load_dance_file(p, resample=resample) for p in paths]


# --- metrics -----------------------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _mean_dict(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in PHYSICAL_KEYS}


def _check_sequences(seqs: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    out = []
    for i, s in enumerate(seqs):
        s = np.asarray(s, dtype=np.float64)
        if s.ndim == 2 and s.shape[1] == 72:
            s = s.reshape(-1, 24, 3)
        if s.ndim != 3 or s.shape[1:] != (24, 3) or s.shape[0] < MIN_FRAMES:
            raise EvaluationError(f"{what} #{i}: shape {s.shape}; expected (T >= {MIN_FRAMES}, 24, 3)")
        out.append(s)
    if len(out) < MIN_FILES:
        raise EvaluationError(f"{what}: {len(out)} sequence(s); FID and diversity need at least {MIN_FILES}")
    return out


def _feature_warnings(gt_kinetic: np.ndarray, gt_manual: np.ndarray) -> list[str]:
    """Why the FIDs may be unreliable: too few GT sequences, or features constant over the GT set.

    A feature that never varies in the GT set is divided by std + 1e-10 (as in the official code), so
    any prediction that differs there inflates FID and diversity enormously.
    """
    notes = []
    for name, feats in (("kinetic", gt_kinetic), ("geometric", gt_manual)):
        if feats.shape[0] <= feats.shape[1]:
            notes.append(f"{feats.shape[0]} GT sequences for {feats.shape[1]}-d {name} features: "
                         "the GT covariance is rank-deficient, FID is noisy")
        constant = np.nonzero(feats.std(axis=0) == 0)[0]
        if constant.size:
            notes.append(f"{name} feature(s) {constant.tolist()} are constant over the GT set: "
                         "FID and diversity blow up wherever predictions differ there")
    return notes


def quality_checks(pred_physical: dict[str, float], gt_physical: dict[str, float],
                   pred_rows: list[dict[str, float]]) -> dict[str, Any]:
    """The default model's acceptance criteria, each with its figure and a pass flag.

    speed: mean joint speed within 50-150 % of GT's; skating: foot-skating ratio <= 1.5x GT's;
    feet on the floor: ground-contact ratio >= 75 % of GT's and every file's floor range <= 10 cm;
    frozen: no file has a frozen stretch longer than 2 s.
    """
    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else (1.0 if a == 0 else math.inf)

    speed = ratio(pred_physical["mean_joint_speed"], gt_physical["mean_joint_speed"])
    skating = ratio(pred_physical["foot_skating_ratio"], gt_physical["foot_skating_ratio"])
    contact = ratio(pred_physical["ground_contact_ratio"], gt_physical["ground_contact_ratio"])
    floor = max(r["floor_range_m"] for r in pred_rows)
    frozen = max(r["longest_frozen_s"] for r in pred_rows)
    checks = {
        "speed_ratio": {"value": speed, "ok": SPEED_RATIO_RANGE[0] <= speed <= SPEED_RATIO_RANGE[1]},
        "skating_ratio_vs_gt": {"value": skating, "ok": skating <= MAX_SKATING_RATIO_VS_GT},
        "contact_ratio_vs_gt": {"value": contact, "ok": contact >= MIN_CONTACT_RATIO_VS_GT},
        "max_floor_range_m": {"value": floor, "ok": floor <= MAX_FLOOR_RANGE_M},
        "max_frozen_s": {"value": frozen, "ok": frozen <= MAX_FROZEN_S},
    }
    checks["all_ok"] = all(c["ok"] for c in checks.values())
    return checks


def compute_metrics(
    pred_list: Sequence[np.ndarray],
    gt_list: Sequence[np.ndarray],
    music_beats_list: Sequence[np.ndarray | None] | None = None,
    *,
    pred_names: Sequence[str] | None = None,
    gt_names: Sequence[str] | None = None,
    gt_music_beats_list: Sequence[np.ndarray | None] | None = None,
    pred_max_frames: int | None = PRED_MAX_FRAMES,
) -> dict[str, Any]:
    """All metrics of predicted vs GT dances, each (T, 24, 3) world joints at 60 fps, y-up, metres.

    ``music_beats_list[i]`` (60 fps frame indices, or None) gives prediction i's beats for BAS.
    Returns the report dict (see the module docstring); ``bas`` is None when no prediction has beats.
    """
    preds = _check_sequences(pred_list, "predictions")
    gts = _check_sequences(gt_list, "ground truth")
    beats = list(music_beats_list) if music_beats_list is not None else [None] * len(preds)
    if len(beats) != len(preds):
        raise EvaluationError(f"{len(beats)} music-beat entries for {len(preds)} predictions")
    gt_beats = list(gt_music_beats_list) if gt_music_beats_list is not None else [None] * len(gts)
    pred_names = list(pred_names) if pred_names is not None else [f"pred_{i:04d}" for i in range(len(preds))]
    gt_names = list(gt_names) if gt_names is not None else [f"gt_{i:04d}" for i in range(len(gts))]

    pred_feats = [extract_motion_features(s, max_frames=pred_max_frames) for s in preds]
    gt_feats = [extract_motion_features(s) for s in gts]
    kinetic = fid_and_diversity(np.stack([f[0] for f in gt_feats]), np.stack([f[0] for f in pred_feats]))
    geometric = fid_and_diversity(np.stack([f[1] for f in gt_feats]), np.stack([f[1] for f in pred_feats]))

    def per_file(names, seqs, beat_list):
        rows = []
        for name, s, b in zip(names, seqs, beat_list):
            row: dict[str, Any] = {"name": name, "frames": int(s.shape[0]), "duration_s": s.shape[0] / MOTION_FPS}
            row["bas"] = None if b is None else beat_align_score(b, s)
            row["music_beats"] = None if b is None else int(len(b))
            row.update(physical_metrics(s, MOTION_FPS))
            rows.append(row)
        return rows

    pred_rows = per_file(pred_names, preds, beats)
    gt_rows = per_file(gt_names, gts, gt_beats)

    def mean_bas(rows):
        values = [r["bas"] for r in rows if r["bas"] is not None]
        return float(np.mean(values)) if values else None

    pred_physical = _mean_dict(pred_rows)
    gt_physical = _mean_dict(gt_rows)
    warnings = _feature_warnings(np.stack([f[0] for f in gt_feats]), np.stack([f[1] for f in gt_feats]))
    report = {
        "fid_k": kinetic["fid"],
        "fid_g": geometric["fid"],
        "div_k": kinetic["div"],
        "div_g": geometric["div"],
        "div_k_gt": kinetic["div_gt"],
        "div_g_gt": geometric["div_gt"],
        "bas": mean_bas(pred_rows),
        "bas_gt": mean_bas(gt_rows),
        "num_pred": len(preds),
        "num_gt": len(gts),
        "num_pred_with_beats": sum(r["bas"] is not None for r in pred_rows),
        "physical_pred": pred_physical,
        "physical_gt": gt_physical,
        "quality_checks": quality_checks(pred_physical, gt_physical, pred_rows),
        "warnings": warnings,
        "protocol": {
            "fps": MOTION_FPS,
            "pred_max_frames": pred_max_frames,
            "zero_start": True,
            "normalisation": "GT mean and std (+1e-10), both sets",
            "bas": "mean over music beats of exp(-d^2/18), motion beats from sigma-5 smoothed joint speed",
        },
        "pred_files": pred_rows,
        "gt_files": gt_rows,
    }
    return _clean(report)


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, *, resample: bool = False) -> dict[str, Any]:
    """Load both folders and run :func:`compute_metrics`; adds the folders and source frame rates."""
    preds = load_folder(pred_dir, resample=resample)
    gts = load_folder(gt_dir, resample=resample)
    report = compute_metrics(
        [d.joints for d in preds],
        [d.joints for d in gts],
        [d.music_beats for d in preds],
        pred_names=[d.name for d in preds],
        gt_names=[d.name for d in gts],
        gt_music_beats_list=[d.music_beats for d in gts],
    )
    for rows, files in ((report["pred_files"], preds), (report["gt_files"], gts)):
        for row, d in zip(rows, files):
            row["source_fps"] = d.source_fps
    report["pred_dir"] = str(Path(pred_dir).resolve())
    report["gt_dir"] = str(Path(gt_dir).resolve())
    return report


# --- output ------------------------------------------------------------------------------------------
def plot_report(report: dict[str, Any], path: str | Path) -> None:
    """A PNG of bar charts: FIDs, diversities and BAS, then each physical figure, predictions vs GT."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pred_c, gt_c = "#d9552b", "#3a78b5"
    panels: list[tuple[str, list[float | None], list[float | None]]] = [
        ("FID_k (lower is better)", [report["fid_k"]], [None]),
        ("FID_g (lower is better)", [report["fid_g"]], [None]),
        ("Div_k (closer to GT)", [report["div_k"]], [report["div_k_gt"]]),
        ("Div_g (closer to GT)", [report["div_g"]], [report["div_g_gt"]]),
        ("beat-align score", [report["bas"]], [report["bas_gt"]]),
    ]
    for key in PHYSICAL_KEYS:
        panels.append((PHYSICAL_TITLES[key], [report["physical_pred"][key]], [report["physical_gt"][key]]))

    fig = Figure(figsize=(15, 8.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 5).ravel()
    width = 0.38
    for ax, (title, pred_vals, gt_vals) in zip(axes, panels):
        for offset, values, colour, label in ((-width / 2, pred_vals, pred_c, "prediction"),
                                              (width / 2, gt_vals, gt_c, "ground truth")):
            v = np.nan if values[0] is None else float(values[0])
            ax.bar([offset], [v], width, color=colour, label=label)
            label_text = f"{v:.4g}" if np.isfinite(v) else "n/a"
            ax.annotate(label_text, (offset, v if np.isfinite(v) else 0.0), ha="center", va="bottom", fontsize=8)
        ax.set_xticks([-width / 2, width / 2], ["pred", "GT"])
        ax.set_xlim(-0.6, 0.6)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
    for ax in axes[len(panels):]:
        ax.axis("off")
    checks = report["quality_checks"]
    lines = [f"{k}: {v['value']:.3g} {'OK' if v['ok'] else 'FAIL'}" for k, v in checks.items()
             if isinstance(v, dict) and v["value"] is not None]
    notes = "\n".join(f"! {w}" for w in report.get("warnings", []))
    axes[-1].text(0, 1, "Quality checks\n" + "\n".join(lines) + ("\n\n" + notes if notes else ""),
                  va="top", fontsize=8, family="monospace", wrap=True)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report['num_pred']} predictions vs {report['num_gt']} ground-truth dances (60 fps)")
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.05, top=0.91, wspace=0.3, hspace=0.4)
    fig.savefig(path, format="png", dpi=100)


def write_report(report: dict[str, Any], json_path: str | Path, png_path: str | Path | None = None) -> None:
    """Write the JSON report (and the PNG plot, if asked): both appear together or not at all."""
    targets = [Path(json_path)] + ([Path(png_path)] if png_path is not None else [])
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_files(targets) as temps:
        temps[0].write_text(json.dumps(_clean(report), indent=2, allow_nan=False) + "\n")
        if png_path is not None:
            plot_report(report, temps[1])


# --- command line ------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", type=Path, help="folder of generated dances (.npz)")
    parser.add_argument("--gt", dest="gt_dir", type=Path, required=True, help="folder of ground-truth dances")
    parser.add_argument("-o", "--output", type=Path, required=True, help="report JSON to write")
    parser.add_argument("--plot", type=Path, default=None, help="PNG plot to write (default: REPORT.png)")
    parser.add_argument("--no-plot", action="store_true", help="write the JSON only")
    parser.add_argument("--resample", action="store_true",
                        help="interpolate files that are not 60 fps to 60 fps instead of refusing them")


def run(args: argparse.Namespace) -> int:
    report = evaluate_folders(args.pred_dir, args.gt_dir, resample=args.resample)
    png = None if args.no_plot else (args.plot or args.output.with_suffix(".png"))
    write_report(report, args.output, png)

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    print(f"{report['num_pred']} predictions vs {report['num_gt']} GT: "
          f"FID_k {fmt(report['fid_k'])}  FID_g {fmt(report['fid_g'])}  "
          f"Div_k {fmt(report['div_k'])} (GT {fmt(report['div_k_gt'])})  "
          f"Div_g {fmt(report['div_g'])} (GT {fmt(report['div_g_gt'])})  BAS {fmt(report['bas'])}")
    print(f"quality checks: {'all OK' if report['quality_checks']['all_ok'] else 'some FAIL'}; "
          f"wrote {args.output}" + (f" and {png}" if png else ""), file=sys.stdout)
    return 0
