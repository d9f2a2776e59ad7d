"""Measure the default model (or any model folder) on what no stage saw, against a baseline model.

``python benchmarks/measure_default_model.py [--model assets/default_model] [--baseline DIR]
[--song S ...] [--seeds 2] [-o benchmarks/results/default_model.json]``

Every model dances to every held-out song (default: ``hungarian_dance_5.ogg``, which no stage may see,
and the demo song) in every style it knows plus "any": the engine's default (from the
style's start pair, the model's default decoding, repeat limit, foot lock, beat sync) and ``--seeds``
sampled variations (seeds 1..n: what "Generate Variations" makes). Each dance is also made without beat sync (the model alone) and
with the song's music shuffled in time (the control). Figures, each checked against the targets of
issue #12 and printed with OK / FAIL:

* **Alive**: mean joint speed against the real takes of the asked style (all its takes as captured, at
  their true frame rate; "any": every take), per style and song, target 0.8-1.25x; the longest
  stretch with the body still (mean joint speed < 0.05 m/s), target <= 1 s; foot skating against the
  style's real takes, target <= 1.2x.
* **Varied**: Div_k / Div_g of the dances against the held-out real takes' (within 20 %), FID_k /
  FID_g against the held-out real takes (lower than the baseline's). Features are the official
  kinetic / geometric ones (``training.metrics``) of 4-s segments (2 s apart) of dances and takes, so
  short held-out takes count and long dances are not one point each; columns constant in the held-out
  takes are left out (``live_columns``).
* **Style**: for each style with at least 2 minutes of data, FID_k of the dances asked for it against
  every style's held-out takes that give at least ``MIN_REFERENCE_SEGMENTS`` segments (a Gaussian
  needs several): its own style must be the closest. Styles with fewer held-out segments are reported
  against all their takes, for information only.
* **Beat**: the engine default's beat-align score per song (target >= 0.30 and >= 1.5x its shuffled
  control); the model alone against its shuffled control: mean difference with a 95 % bootstrap
  interval over dances (target: the interval excludes zero).

The held-out takes are the validation split of ``--config`` (``training/configs/default_vqvae.yaml``).
One torch thread by default; about 15 minutes for two models on this 2-core machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SHARED = Path(os.environ.get("DANCE_SHARED", REPO_ROOT.parent / "shared"))
DEFAULT_SONGS = [SHARED / "data" / "music" / "hungarian_dance_5.ogg", REPO_ROOT / "assets" / "demo_song.ogg"]
DEFAULT_MODEL = REPO_ROOT / "assets" / "default_model"
DEFAULT_CONFIG = REPO_ROOT / "training" / "configs" / "default_vqvae.yaml"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "default_model.json"
SEGMENT, SEGMENT_STRIDE = 240, 120  # 4-s segments, 2 s apart, for FID and diversity
MIN_REFERENCE_SEGMENTS = 5
STYLE_MIN_MINUTES = 2.0
SHUFFLE_SEED = 0
BOOTSTRAP = 10_000
TARGETS = {"speed": (0.8, 1.25), "still_s": 1.0, "skating": 1.2, "div": 0.2, "bas": 0.30, "bas_ratio": 1.5}


# --- helpers --------------------------------------------------------------------------------------------
def segments(joints: np.ndarray) -> list[np.ndarray]:
    """4-s pieces 2 s apart (a take shorter than 4 s gives none)."""
    return [joints[s : s + SEGMENT] for s in range(0, len(joints) - SEGMENT + 1, SEGMENT_STRIDE)]


def segment_features(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(kinetic (n, 72), geometric (n, 32)) features of each piece."""
    from training.metrics.features import extract_motion_features

    feats = [extract_motion_features(p) for p in pieces]
    return np.stack([k for k, _ in feats]), np.stack([g for _, g in feats])


def live_columns(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets without the columns that are constant in the reference: the official
    normalisation divides by (std + 1e-10), so such a column (a geometric feature that never fires in a
    few held-out takes) would weigh 1e10 and drown every other one."""
    keep = np.asarray(gt).std(axis=0) > 1e-6
    return np.asarray(gt)[:, keep], np.asarray(pred)[:, keep]


def frames_weighted(values: list[float], weights: list[int]) -> float:
    return float(np.average(values, weights=weights))


def bootstrap_interval(diffs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(BOOTSTRAP, len(diffs)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _reconstruction_cm(vqvae, clips, torch) -> float:
    """Root-relative MPJPE (cm, joints 1..23) of encode -> decode over the clips, frame-weighted."""
    from training.stages.common import poses_and_root_velocity

    total, frames = 0.0, 0
    for clip in clips:
        t = clip.num_frames // 8 * 8
        if t < 8:
            continue
        pose, _ = poses_and_root_velocity(clip.joints[None, :t])  # (1, t, 72)
        with torch.inference_mode():
            decoded = vqvae.decode(*vqvae.encode(torch.from_numpy(pose))).float().numpy()[0]
        err = np.linalg.norm(decoded[:, 3:].reshape(t, 23, 3) - pose[0, :, 3:].reshape(t, 23, 3), axis=-1)
        total += float(err.mean(axis=1).sum() * 100)
        frames += t
    return total / max(frames, 1)


# --- the real takes ---------------------------------------------------------------------------------------
def real_reference(split) -> dict[str, Any]:
    """Per style ("any" = all): speed and skating of all takes, features of held-out and of all takes."""
    from training.metrics.physical import foot_skating_ratio, mean_joint_speed

    clips = split.train + split.val
    held = {id(c) for c in split.val}
    styles = sorted({c.style for c in clips if c.style})
    ref: dict[str, Any] = {}
    for style in ["any", *styles]:
        mine = [c for c in clips if style == "any" or c.style == style]
        w = [c.num_frames for c in mine]
        held_pieces = [p for c in mine if id(c) in held for p in segments(c.joints)]
        all_pieces = [p for c in mine for p in segments(c.joints)]
        ref[style] = {
            "minutes": sum(w) / 3600, "takes": len({c.take_id for c in mine}),
            "held_out_takes": sorted({c.take_id for c in mine if id(c) in held}),
            "speed": frames_weighted([mean_joint_speed(c.joints, 60) for c in mine], w),
            "skating": frames_weighted([foot_skating_ratio(c.joints, 60) for c in mine], w),
            "held_out_segments": len(held_pieces), "all_segments": len(all_pieces),
            "held_out_features": segment_features(held_pieces) if held_pieces else None,
            "all_features": segment_features(all_pieces) if all_pieces else None,
        }
    return ref


# --- dances -----------------------------------------------------------------------------------------------
def dance_model(model_dir: Path, songs: list[Path], n_seeds: int) -> dict[str, Any]:
    """Every dance of one model: {style: [ {song, seed, default, alone, default_shuffled, alone_shuffled} ]}."""
    from engine.generate import Choreographer, GenerateOptions
    from training.metrics.beats import shuffled_in_time

    chor = Choreographer(model_dir)
    styles = ["any", *chor.model.config.styles]
    base = GenerateOptions(rotations=False)
    out: dict[str, Any] = {"name": chor.model.config.name, "styles": styles, "dances": {s: [] for s in styles},
                           "seconds": 0.0, "tokens": 0, "vqvae": chor.model.vqvae}
    for song in songs:
        feats = chor.features(song)
        shuffled = shuffled_in_time(feats, SHUFFLE_SEED)
        for style in styles:
            for seed in range(n_seeds + 1):
                sampling = base.sampling if seed == 0 else dataclasses.replace(base.sampling, greedy=False, seed=seed)
                default = dataclasses.replace(base, style=style, sampling=sampling)
                alone = dataclasses.replace(default, beat_sync=None)
                t0 = time.perf_counter()
                row = {"song": song.stem, "seed": seed, "default": chor.generate(song, default, features=feats)}
                out["seconds"] += time.perf_counter() - t0
                out["tokens"] += len(row["default"].codes_up)
                row["alone"] = chor.generate(song, alone, features=feats)
                row["default_shuffled"] = chor.generate(song, default, features=shuffled)
                row["alone_shuffled"] = chor.generate(song, alone, features=shuffled)
                out["dances"][style].append(row)
    return out


def score_model(danced: dict[str, Any], ref: dict[str, Any], songs: list[Path]) -> dict[str, Any]:
    from training.metrics.beats import beat_align_score
    from training.metrics.fid import fid_and_diversity, frechet_distance, normalize_by_gt
    from training.metrics.physical import foot_skating_ratio, longest_frozen_seconds, mean_joint_speed

    report: dict[str, Any] = {"name": danced["name"], "styles": {}, "beat": {}}
    all_pieces: list[np.ndarray] = []
    lo, hi = TARGETS["speed"]
    for style, rows in danced["dances"].items():
        real = ref.get(style)
        per_song = {}
        for song in songs:
            mine = [r["default"].joints for r in rows if r["song"] == song.stem]
            speed = float(np.mean([mean_joint_speed(j, 60) for j in mine]))
            per_song[song.stem] = {"speed": speed, "speed_ratio": speed / real["speed"] if real else None}
        joints = [r["default"].joints for r in rows]
        pieces = [p for j in joints for p in segments(j)]
        all_pieces += pieces
        still = max(longest_frozen_seconds(j, 60) for j in joints)
        skating = float(np.mean([foot_skating_ratio(j, 60) for j in joints]))
        entry: dict[str, Any] = {
            "per_song": per_song, "longest_still_s": still, "skating": skating,
            "skating_ratio": skating / real["skating"] if real else None,
            "speed_ok": bool(real) and all(lo <= v["speed_ratio"] <= hi for v in per_song.values()),
            "still_ok": still <= TARGETS["still_s"],
            "skating_ok": bool(real) and skating / real["skating"] <= TARGETS["skating"],
        }
        if real and real["held_out_features"] is not None:
            # the style test: FID_k of this style's dances against each style's real takes
            kin = segment_features(pieces)[0]
            against = {}
            for other, r in ref.items():
                if other == "any":
                    continue
                use_held = r["held_out_segments"] >= MIN_REFERENCE_SEGMENTS
                feats = r["held_out_features"] if use_held else r["all_features"]
                if feats is not None:
                    gt_n, pred_n = normalize_by_gt(*live_columns(feats[0], kin))
                    against[other] = {"fid_k": frechet_distance(gt_n, pred_n),
                                      "reference": "held-out takes" if use_held else "all takes"}
            entry["fid_k_against_styles"] = against
            held = {k: v["fid_k"] for k, v in against.items() if v["reference"] == "held-out takes"}
            if style != "any" and real["minutes"] >= STYLE_MIN_MINUTES and style in held:
                entry["style_ok"] = all(held[style] < v for k, v in held.items() if k != style)
        report["styles"][style] = entry

    # varied: all of this model's default dances pooled, against the held-out real takes of every style
    kin, geo = segment_features(all_pieces)
    gt_kin, gt_geo = ref["any"]["held_out_features"]
    k, g = fid_and_diversity(*live_columns(gt_kin, kin)), fid_and_diversity(*live_columns(gt_geo, geo))
    report["varied"] = {"fid_k": k["fid"], "fid_g": g["fid"], "div_k": k["div"], "div_g": g["div"],
                        "div_k_real": k["div_gt"], "div_g_real": g["div_gt"], "segments": len(all_pieces),
                        "real_segments": ref["any"]["held_out_segments"]}
    report["varied"]["div_ok"] = all(abs(report["varied"][f"div_{x}"] / report["varied"][f"div_{x}_real"] - 1)
                                     <= TARGETS["div"] for x in ("k", "g"))
    any_pieces = [p for r in danced["dances"]["any"] for p in segments(r["default"].joints)]
    kin_any, geo_any = segment_features(any_pieces)
    report["varied"]["fid_k_any"] = fid_and_diversity(*live_columns(gt_kin, kin_any))["fid"]
    report["varied"]["fid_g_any"] = fid_and_diversity(*live_columns(gt_geo, geo_any))["fid"]

    # beat: per song over every style and seed
    rows = [r for style_rows in danced["dances"].values() for r in style_rows]
    diffs = []
    for song in songs:
        mine = [r for r in rows if r["song"] == song.stem]

        def bas(kind: str, dances=mine) -> list[float]:
            # every dance is scored against the real song's beats, its shuffled control too
            return [beat_align_score(r["default"].music_beats, r[kind].joints) for r in dances]

        default, default_sh = bas("default"), bas("default_shuffled")
        alone, alone_sh = bas("alone"), bas("alone_shuffled")
        diffs += [a - b for a, b in zip(alone, alone_sh)]
        report["beat"][song.stem] = {
            "engine_default": float(np.mean(default)), "engine_default_shuffled": float(np.mean(default_sh)),
            "model_alone": float(np.mean(alone)), "model_alone_shuffled": float(np.mean(alone_sh)),
            "dances": len(mine),
        }
        b = report["beat"][song.stem]
        b["engine_ok"] = b["engine_default"] >= TARGETS["bas"] and \
            b["engine_default"] >= TARGETS["bas_ratio"] * b["engine_default_shuffled"]
    d = np.asarray(diffs)
    ci = bootstrap_interval(d)
    report["beat"]["model_alone_minus_shuffled"] = {"mean": float(d.mean()), "ci95": list(ci), "dances": len(d),
                                                    "ok": ci[0] > 0}
    report["generation"] = {"tokens_per_second": danced["tokens"] / max(danced["seconds"], 1e-9)}
    return report


def measure(models: dict[str, Path], songs: list[Path], config_path: Path, n_seeds: int,
            out_path: Path | None) -> dict[str, Any]:
    import torch

    from training.config import load_config
    from training.data.sources import load_split

    split = load_split(load_config(config_path).data)
    ref = real_reference(split)
    report: dict[str, Any] = {
        "songs": [str(s) for s in songs], "seeds": n_seeds, "targets": TARGETS,
        "real": {s: {k: v for k, v in r.items() if not k.endswith("_features")} for s, r in ref.items()},
        "models": {},
    }
    for label, model_dir in models.items():
        danced = dance_model(model_dir, songs, n_seeds)
        scored = score_model(danced, ref, songs)
        scored["path"] = str(model_dir)
        scored["vqvae_mpjpe_held_out_cm"] = _reconstruction_cm(danced["vqvae"].eval(), split.val, torch)
        report["models"][label] = scored
    if "baseline" in report["models"]:
        new, old = report["models"]["model"]["varied"], report["models"]["baseline"]["varied"]
        new["fid_lower_than_baseline"] = bool(new["fid_k"] < old["fid_k"] and new["fid_g"] < old["fid_g"])
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.partial")
        tmp.write_text(json.dumps(report, indent=2, default=float) + "\n")
        os.replace(tmp, out_path)
    return report


def _ok(flag: Any) -> str:
    return "OK" if flag else "FAIL"


def print_report(r: dict[str, Any]) -> None:
    print(f"songs {', '.join(Path(s).name for s in r['songs'])}; the engine's default dance + {r['seeds']} more "
          "seeds per style and song")
    print("real takes (all, as captured): " + "; ".join(
        f"{s} {v['minutes']:.1f} min, {v['speed']:.2f} m/s, skating {v['skating']:.3f}, held out "
        f"{len(v['held_out_takes'])} takes / {v['held_out_segments']} segments" for s, v in r["real"].items()))
    for label, m in r["models"].items():
        print(f"\n== {label}: {m['name']} ({m['path']})")
        for style, e in m["styles"].items():
            speeds = ", ".join(f"{song} {v['speed']:.2f} m/s ({v['speed_ratio']:.2f}x)"
                               for song, v in e["per_song"].items())
            line = (f"  {style:<7} speed {speeds} {_ok(e['speed_ok'])}; still {e['longest_still_s']:.2f} s "
                    f"{_ok(e['still_ok'])}; skating {e['skating']:.3f} ({e['skating_ratio']:.2f}x) {_ok(e['skating_ok'])}")
            print(line)
            if "fid_k_against_styles" in e:
                print("          FID_k vs " + ", ".join(f"{k} {v['fid_k']:.1f}" for k, v in
                                                       e["fid_k_against_styles"].items())
                      + (f"  style {_ok(e['style_ok'])}" if "style_ok" in e else ""))
        v = m["varied"]
        print(f"  varied: FID_k {v['fid_k']:.2f} FID_g {v['fid_g']:.2f} (style any: {v['fid_k_any']:.2f} / "
              f"{v['fid_g_any']:.2f}); Div_k {v['div_k']:.2f} vs real {v['div_k_real']:.2f}, Div_g {v['div_g']:.2f} "
              f"vs real {v['div_g_real']:.2f} {_ok(v['div_ok'])}"
              + (f"; FID lower than the baseline's {_ok(v['fid_lower_than_baseline'])}"
                 if "fid_lower_than_baseline" in v else ""))
        for song, b in m["beat"].items():
            if song == "model_alone_minus_shuffled":
                continue
            print(f"  beat {song}: engine default {b['engine_default']:.3f} vs shuffled "
                  f"{b['engine_default_shuffled']:.3f} {_ok(b['engine_ok'])}; model alone {b['model_alone']:.3f} "
                  f"vs shuffled {b['model_alone_shuffled']:.3f}")
        d = m["beat"]["model_alone_minus_shuffled"]
        print(f"  model alone minus shuffled: {d['mean']:+.4f}, 95 % CI [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] "
              f"over {d['dances']} dances {_ok(d['ok'])}")
        print(f"  VQ-VAE MPJPE on the held-out takes {m['vqvae_mpjpe_held_out_cm']:.1f} cm; "
              f"{m['generation']['tokens_per_second']:.0f} tokens/s (engine default, positions only)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: %(default)s)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a model folder to measure in the same run for comparison (e.g. the previous release)")
    parser.add_argument("--song", type=Path, action="append", default=None,
                        help="held-out song (repeatable; default: hungarian_dance_5.ogg and the demo song)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="training config whose data split defines the held-out takes (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=2, help="sampled dances per style and song besides the greedy one")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="JSON to write (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    songs = args.song or DEFAULT_SONGS
    missing = [s for s in songs if not s.is_file()]
    if missing:
        print(f"error: {missing[0]} does not exist (the real data lives in ../shared; set DANCE_SHARED)",
              file=sys.stderr)
        return 2
    models = {"model": args.model, **({"baseline": args.baseline} if args.baseline else {})}
    report = measure(models, songs, args.config, args.seeds, args.out)
    print_report(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
