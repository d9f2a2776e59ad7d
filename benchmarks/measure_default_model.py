"""Measure the default model (or any model folder) on what it never saw in training.

``python benchmarks/measure_default_model.py [--model assets/default_model] [-o benchmarks/results/default_model.json]``

Prints and writes as JSON:

1. **Beat alignment on held-out real music.** The model dances (greedy) to a song that no stage saw
   (``hungarian_dance_5.ogg`` for the default model) from several start poses: the model's default
   start and poses of the held-out takes every 2 s, spread evenly (``--starts`` in all). Each dance is
   scored with the paper's beat-align score (``training.metrics.beats.beat_align_score``, motion beats
   vs the song's beats).
   The control is the *same model, same start, same song* with the music features shuffled in time
   (rows permuted, the beats moved with their rows, the score still taken against the real beats): if
   the dance follows the music, shuffling must cost beat alignment. Three variants are measured: the
   engine's default (repeat limit + beat sync, what users get), without beat sync (the model's own
   timing), and without the repeat limit either (the official greedy decoder). Because BAS also rises with the mere number of motion beats,
   the report takes it apart (``training.metrics.beats.beat_timing``): motion beats per music beat
   (rate) and the share of motion beats within 3 frames of a music beat against chance (timing).
2. **Quality against the training data.** The real-music dances' physical figures (mean joint speed,
   foot skating, ground contact, floor range, longest frozen stretch) against those of the training
   takes, with the acceptance checks of ``training.metrics.evaluate.quality_checks`` (the same figures
   ``python -m training evaluate`` reports).
3. **VQ-VAE reconstruction on held-out takes.** Mean per-joint position error (cm, root-relative,
   joints 1..23; the root is the origin) of encode -> decode over the takes of the config's validation
   split (the takes no stage trained on), and over the training takes for comparison; and how much
   beat timing the codes keep: the training takes against their synthesised accompaniment, captured
   and after encode -> decode (the GPT can place motion beats no more precisely than its codes can).

The held-out takes are the validation split of ``--config`` (``training/configs/default_vqvae.yaml``:
12 % of the takes by a seeded hash, the same split in every stage). Runs on a CPU with one thread by
default; a few minutes for the default model.
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
DEFAULT_SONGS = [SHARED / "data" / "music" / "hungarian_dance_5.ogg"]
DEFAULT_MODEL = REPO_ROOT / "assets" / "default_model"
DEFAULT_CONFIG = REPO_ROOT / "training" / "configs" / "default_vqvae.yaml"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "default_model.json"
SHUFFLE_SEEDS = (0, 1)
START_EVERY_FRAMES = 120  # candidate start poses: every 2 s of the held-out takes


def _reconstructions(vqvae, clips, torch) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    """(clip, pose, decoded) of encode -> decode for each clip of at least one token, cut to whole tokens:
    pose (t, 72) root-relative as the VQ-VAE sees it; decoded (t, 72), channels 0-2 the root velocity."""
    from training.stages.common import poses_and_root_velocity

    out = []
    for clip in clips:
        t = clip.num_frames // 8 * 8
        if t < 8:
            continue
        pose, _ = poses_and_root_velocity(clip.joints[None, :t])  # (1, t, 72)
        with torch.inference_mode():
            up, down = vqvae.encode(torch.from_numpy(pose))
            decoded = vqvae.decode(up, down).float().numpy()
        out.append((clip, pose[0], decoded[0]))
    return out


def _mpjpe_cm(reconstructions) -> dict[str, Any]:
    """Root-relative MPJPE (cm, joints 1..23) of encode -> decode, per clip and frame-weighted mean."""
    rows, total, frames = [], 0.0, 0
    for clip, pose, decoded in reconstructions:
        t = len(pose)
        err = np.linalg.norm(decoded[:, 3:].reshape(t, 23, 3) - pose[:, 3:].reshape(t, 23, 3), axis=-1)
        rows.append({"clip": clip.name, "take": clip.take_id, "frames": t, "mpjpe_cm": float(err.mean() * 100)})
        total += float(err.mean(axis=1).sum() * 100)
        frames += t
    return {"mean_cm": total / max(frames, 1), "clips": rows}


def _timing_kept(reconstructions, cfg) -> dict[str, Any]:
    """How much beat timing survives the VQ-VAE: each take's synthesised accompaniment (the GPT's training
    music, beats on the take's own motion beats) against the captured motion and its encode -> decode."""
    from engine.audio import extract_features
    from engine.models.vqvae import integrate_root
    from training.accompaniment import accompaniment_for_motion
    from training.metrics.beats import beat_align_score, beat_timing

    rows: dict[str, list[dict[str, float]]] = {"captured": [], "reconstructed": []}
    for clip, pose, decoded in reconstructions:
        t = len(pose)
        if t < 64:
            continue
        wav, _ = accompaniment_for_motion(clip.joints, cfg.music.accompaniment_dir, clip.name, clip.fps)
        beats = extract_features(wav, "full", with_beats=True, cache_dir=cfg.music.feature_cache_dir).beats
        for kind, joints in (("captured", clip.joints[:t]), ("reconstructed", integrate_root(decoded[None])[0])):
            timing = beat_timing(beats, joints)
            if timing is not None:
                rows[kind].append({**timing, "bas": beat_align_score(beats, joints)})
    return {kind: {key: float(np.mean([r[key] for r in rs])) for key in rs[0]} for kind, rs in rows.items() if rs}


def measure(model_dir: Path, songs: list[Path], config_path: Path, out_path: Path | None,
            n_starts: int = 8, max_gt_clips: int | None = None, temperature: float | None = None) -> dict[str, Any]:
    import torch

    from engine.clock import TOKEN_FPS
    from engine.generate import Choreographer, GenerateOptions
    from engine.sampling import longest_repeat
    from training.config import load_config
    from training.data.sources import load_windows
    from training.metrics.beats import beat_align_score, beat_timing, shuffled_in_time
    from training.metrics.evaluate import compute_metrics

    cfg = load_config(config_path)
    _, _, split = load_windows(cfg.data)
    chor = Choreographer(model_dir)
    # BAS and physical figures need positions only; greedy unless a sampling temperature is given (then a
    # fixed seed per dance, the same for its shuffled-music controls)
    options = GenerateOptions(rotations=False)
    if temperature is not None:
        options = dataclasses.replace(options, sampling=dataclasses.replace(
            options.sampling, greedy=False, temperature=temperature, seed=0))
    # what the engine does by default, the model's own timing (no beat sync), and the official decoder
    # (no repeat limit either): the first is what users get, the others show where the figures come from
    variants = {
        "engine_default": options,
        "no_beat_sync": dataclasses.replace(options, beat_sync=None),
        "no_beat_sync_no_repeat_limit": dataclasses.replace(
            options, beat_sync=None, sampling=dataclasses.replace(options.sampling, max_repeat=None)),
    }

    # start poses: the model's default, then poses of the held-out takes every 2 s, spread evenly
    candidates = [chor.encode_pose(clip.joints[f : f + 24]) for clip in split.val
                  for f in range(0, clip.num_frames - 24, START_EVERY_FRAMES)]
    picked = np.linspace(0, len(candidates) - 1, num=min(n_starts - 1, len(candidates))).round().astype(int)
    starts = [tuple(int(c) for c in chor.model.config.default_start)] + [candidates[i] for i in picked]
    starts = list(dict.fromkeys(starts))

    report: dict[str, Any] = {
        "model": str(model_dir), "model_name": chor.model.config.name, "songs": [str(s) for s in songs],
        "held_out_takes": sorted(split.val_takes), "train_takes": sorted(split.train_takes),
        "start_codes": [list(s) for s in starts], "shuffle_seeds": list(SHUFFLE_SEEDS),
        "sampling": dataclasses.asdict(options.sampling),
    }
    report["variants"] = {name: {"beat_sync": None if o.beat_sync is None else dataclasses.asdict(o.beat_sync),
                                 "max_repeat": o.sampling.max_repeat} for name, o in variants.items()}
    real_dances, real_beats, names, gen_s, tokens = [], [], [], [], 0
    for song in songs:
        feats = chor.features(song)
        for start in starts:
            for name, variant in variants.items():
                opts = dataclasses.replace(variant, start_codes=start)
                t0 = time.perf_counter()
                dance = chor.generate(song, opts, features=feats)
                row = report["variants"][name]
                if name == "engine_default":
                    gen_s.append(time.perf_counter() - t0)
                    tokens += len(dance.codes_up)
                    real_dances.append(dance.joints)
                    real_beats.append(dance.music_beats)
                    names.append(f"{song.stem}_start{start[0]}-{start[1]}")
                row.setdefault("bas_real", []).append(beat_align_score(dance.music_beats, dance.joints))
                row.setdefault("timing_real", []).append(beat_timing(dance.music_beats, dance.joints))
                hold = longest_repeat(dance.codes_up, dance.codes_down) / TOKEN_FPS  # s of the unwarped dance
                row.setdefault("longest_hold_s", []).append(hold)
                if dance.meta.get("beat_sync"):
                    row.setdefault("sync", []).append({k: dance.meta["beat_sync"][k] for k in
                                                       ("pairs", "motion_beats", "music_beats", "slowest_rate",
                                                        "fastest_rate")})
                for seed in SHUFFLE_SEEDS:
                    shuffled = chor.generate(song, opts, features=shuffled_in_time(feats, seed))
                    # score against the real song's beats: the motion is compared with the music it is meant for
                    row.setdefault("bas_shuffled", []).append(beat_align_score(dance.music_beats, shuffled.joints))
                    row.setdefault("timing_shuffled", []).append(beat_timing(dance.music_beats, shuffled.joints))
    for row in report["variants"].values():
        row["bas"] = {
            "real_music_mean": float(np.mean(row["bas_real"])), "real_music_per_dance": row.pop("bas_real"),
            "shuffled_music_mean": float(np.mean(row["bas_shuffled"])),
            "shuffled_music_per_dance": row.pop("bas_shuffled"), "aistpp_ground_truth_paper": 0.2374,
        }
        # rate vs timing (training.metrics.beats.beat_timing): means over the dances that have motion beats
        timing = {kind: [t for t in row.pop(f"timing_{kind}") if t is not None] for kind in ("real", "shuffled")}
        row["beat_timing"] = {kind: {key: float(np.mean([t[key] for t in rows]))
                                     for key in ("motion_beats_per_music_beat", "on_beat_fraction",
                                                 "chance_on_beat_fraction")}
                              for kind, rows in timing.items()}
        if "sync" in row:
            sync = row.pop("sync")
            row["beat_sync_done"] = {
                "pairs_per_music_beat": float(np.mean([r["pairs"] / max(r["music_beats"], 1) for r in sync])),
                "pairs_per_motion_beat": float(np.mean([r["pairs"] / max(r["motion_beats"], 1) for r in sync])),
                "min_rate": float(min(r["slowest_rate"] for r in sync)),
                "max_rate": float(max(r["fastest_rate"] for r in sync)),
            }
    report["bas"] = report["variants"]["engine_default"]["bas"]
    report["beat_timing"] = report["variants"]["engine_default"]["beat_timing"]
    report["generation"] = {"dances": len(real_dances), "mean_seconds_per_dance": float(np.mean(gen_s)),
                            "tokens_per_second": tokens / max(sum(gen_s), 1e-9), "torch_threads": torch.get_num_threads()}

    gt_clips = split.train if max_gt_clips is None else split.train[:max_gt_clips]
    metrics = compute_metrics(real_dances, [c.joints for c in gt_clips], real_beats, pred_names=names,
                              gt_names=[c.name for c in gt_clips])
    report["quality"] = {
        "physical_generated": metrics["physical_pred"], "physical_training_data": metrics["physical_gt"],
        "checks": metrics["quality_checks"], "per_dance": metrics["pred_files"],
    }

    vqvae = chor.model.vqvae.eval()
    train_recon = _reconstructions(vqvae, split.train, torch)  # once, for both figures below
    report["vqvae_mpjpe"] = {"held_out": _mpjpe_cm(_reconstructions(vqvae, split.val, torch)),
                             "train": _mpjpe_cm(train_recon)}
    report["vqvae_beat_timing_train"] = _timing_kept(train_recon, cfg)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.partial")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, out_path)
    return report


def print_report(r: dict[str, Any]) -> None:
    q, m = r["quality"], r["vqvae_mpjpe"]
    print(f"model {r['model']}  songs {', '.join(Path(s).name for s in r['songs'])}  "
          f"held-out takes {', '.join(r['held_out_takes'])}")
    for name, v in r["variants"].items():
        b = v["bas"]
        k = len(r["shuffle_seeds"])
        wins = sum(real > np.mean(b["shuffled_music_per_dance"][k * i : k * i + k])
                   for i, real in enumerate(b["real_music_per_dance"]))
        print(f"{name}: beat-align score, held-out music {b['real_music_mean']:.4f} over "
              f"{len(b['real_music_per_dance'])} dances; music shuffled in time {b['shuffled_music_mean']:.4f} "
              f"(ratio {b['real_music_mean'] / max(b['shuffled_music_mean'], 1e-9):.2f}; real higher in {wins}); "
              f"longest hold of one code pair {max(v['longest_hold_s']):.1f} s")
        for kind, t in v["beat_timing"].items():
            print(f"  {kind + ' music':<15} motion beats per music beat {t['motion_beats_per_music_beat']:.2f}; "
                  f"{100 * t['on_beat_fraction']:.0f} % of them within 3 frames of a music beat "
                  f"(chance {100 * t['chance_on_beat_fraction']:.0f} %)")
        if "beat_sync_done" in v:
            d = v["beat_sync_done"]
            print(f"  beat sync pulled {100 * d['pairs_per_music_beat']:.0f} % of the music beats "
                  f"({100 * d['pairs_per_motion_beat']:.0f} % of the motion beats); playback rate "
                  f"{d['min_rate']:.2f}-{d['max_rate']:.2f}")
    print("AIST++ ground truth (paper) 0.2374; quality below: engine_default")
    gen, gt = q["physical_generated"], q["physical_training_data"]
    for key in ("mean_joint_speed", "foot_skating_ratio", "ground_contact_ratio", "floor_range_m",
                "longest_frozen_s", "jitter"):
        print(f"  {key:<22} generated {gen[key]:10.4f}   training data {gt[key]:10.4f}")
    for key, check in q["checks"].items():
        if isinstance(check, dict):
            print(f"  check {key:<22} {check['value']:.3f}  {'OK' if check['ok'] else 'FAIL'}")
    print(f"  all checks: {'OK' if q['checks']['all_ok'] else 'FAIL'}")
    print(f"VQ-VAE MPJPE: held-out takes {m['held_out']['mean_cm']:.2f} cm, training takes {m['train']['mean_cm']:.2f} cm")
    for kind, t in r.get("vqvae_beat_timing_train", {}).items():
        print(f"  training takes {kind:<13} vs their accompaniment: BAS {t['bas']:.3f}, "
              f"{100 * t['on_beat_fraction']:.0f} % of motion beats within 3 frames of a beat "
              f"(chance {100 * t['chance_on_beat_fraction']:.0f} %)")
    g = r["generation"]
    print(f"generation: {g['mean_seconds_per_dance']:.2f} s per dance, {g['tokens_per_second']:.0f} tokens/s "
          f"({g['torch_threads']} torch thread(s), positions only)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: %(default)s)")
    parser.add_argument("--song", type=Path, action="append", default=None,
                        help="held-out song (repeatable; default: hungarian_dance_5.ogg from ../shared)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="training config whose data split defines the held-out takes (default: %(default)s)")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="JSON to write (default: %(default)s)")
    parser.add_argument("--starts", type=int, default=8, help="start poses per song (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sample at this temperature with seed 0 instead of greedy decoding")
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
    report = measure(args.model, songs, args.config, args.out, n_starts=args.starts, temperature=args.temperature)
    print_report(report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
