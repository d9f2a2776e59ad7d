"""The duet on the held-out couples: the model's follower against the real one and three controls.

    .venv/bin/python benchmarks/measure_duet.py [--model assets/default_model] [--seeds 5] [--out FILE]

For each held-out take (``training/configs/default_duet.yaml``: salsa 11, which no stage has seen) and
each seed, the model accompanies the real leader (with the accompaniment synthesised on his beats, as
without a song), and each measure of ``training.metrics.duet`` is taken against the true leader; the
same for the controls, scored the same way:

* C1: the model fed the leader 4 s late (his first pose held meanwhile): a follower that does not
  react to this leader's moves;
* C2: the model fed another take's leader (salsa 02): placed around someone else;
* C3: the solo model's dance to the same music, placed at the real couples' mean offset in front of
  the leader and turned to face him.

Also, for the model and C1, C2: the follower's placement slide (cm per step it is carried to its place
rather than moved by its own steps; what the RL phase ``python -m training duet-rl`` minimises), and
its hand contact before the engine joins hands (``engine.duet.join_hands``): what the GPT itself does.

Printed and written as JSON: every measure per condition (mean over seeds), the real takes' range, the
Wasserstein-1 distance of the pelvis distances to the real follower's, the BED difference to C1 with a
bootstrap interval over the leader's beats, solo quality against the real follower (speed, skating,
longest freeze), and the time to accompany 20 s of a leader.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHIFT_S = 4.0
C2_TAKE = "cmu_salsa_02"


def delayed(leader: np.ndarray, frames: int) -> np.ndarray:
    """The leader ``frames`` late, his first pose held meanwhile (no jump where the roll would wrap)."""
    return leader[np.maximum(np.arange(len(leader)) - frames, 0)]


def placed_solo(solo: np.ndarray, leader: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """A solo dance turned to face the leader's first facing and moved so its pelvis is at
    ``offset`` (left, ahead) in the leader's facing frame on every frame."""
    from engine.skeleton import facing_direction, facing_frame

    n = min(len(solo), len(leader))
    solo, leader = solo[:n].astype(np.float64), leader[:n].astype(np.float64)
    lead_face, left = facing_frame(leader)
    want = -lead_face[0]
    have = facing_direction(solo)[0]
    angle = np.arctan2(want[0], want[2]) - np.arctan2(have[0], have[2])  # about +y
    c, s = np.cos(angle), np.sin(angle)
    turn = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    out = (solo - solo[:, :1]) @ turn.T + solo[:, :1] * [0.0, 1.0, 0.0]  # about its own pelvis, height kept
    target = leader[:, 0] + offset[0] * left + offset[1] * lead_face
    out[..., 0] += target[:, None, 0]
    out[..., 2] += target[:, None, 2]
    return out


def placement_slide_cm(vqvae, dance, leader: np.ndarray) -> float:
    """Mean cm per step the follower is carried to its place rather than moved by its own steps
    (``engine.duet.placement_drift``), from the dance's codes: what the duet's RL phase pays for
    (``training.stages.duet_rl.slide_per_step``)."""
    from engine.duet import decode_follower, placement_drift
    from training.stages.duet_rl import slide_per_step

    drift = placement_drift(decode_follower(vqvae, dance.codes_up, dance.codes_down),
                            dance.meta["relative_position_codes"], leader)
    return float(100 * slide_per_step(drift, len(dance.codes_up)).mean())


def bootstrap_difference(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean(a) - mean(b) and its 95 % bootstrap interval (each resampled on its own)."""
    rng = np.random.default_rng(seed)
    diffs = [rng.choice(a, len(a)).mean() - rng.choice(b, len(b)).mean() for _ in range(n)]
    return float(a.mean() - b.mean()), float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "assets" / "default_model")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "duet.json")
    args = parser.parse_args()

    import torch

    from engine.accompaniment import accompaniment_for_motion
    from engine.audio.cache import default_cache_dir
    from engine.duet import follower_joints
    from engine.generate import Choreographer, GenerateOptions
    from engine.sampling import SamplingOptions
    from engine.skeleton import facing_frame
    from training.config import load_config
    from training.data.duet import load_duets, split_duets
    from training.metrics import duet as m
    from training.metrics.physical import foot_skating_ratio, longest_frozen_seconds, mean_joint_speed

    torch.set_num_threads(1)
    cfg = load_config(REPO / "training" / "configs" / "default_duet.yaml")
    couples = load_duets(cfg.duet.duet_dir)
    train, held = split_duets(couples, cfg.duet.held_out)
    other = next(d for d in couples if d.take_id == C2_TAKE)
    chor = Choreographer(args.model)
    # the real couples: each measure's range over the 13 takes; the mean offset of the follower (C3)
    real_range = {}
    per_take = [m.duet_measures(d.leader.astype(np.float64), d.follower.astype(np.float64)) for d in couples]
    for key in per_take[0]:
        values = [t[key] for t in per_take]
        real_range[key] = [float(np.nanmin(values)), float(np.nanmax(values))]
    offsets = []
    for d in train:
        face, left = facing_frame(d.leader)
        v = d.follower[:, 0] - d.leader[:, 0]
        offsets.append(np.stack([(v * left).sum(1), (v * face).sum(1)], 1))
    mean_offset = np.concatenate(offsets).mean(axis=0)

    results: dict = {"model": str(args.model), "held_out": [d.take_id for d in held], "seeds": args.seeds,
                     "real_range_over_takes": real_range, "mean_offset_left_ahead_m": mean_offset.tolist(),
                     "conditions": {}}
    for duet in held:
        lead, real = duet.leader.astype(np.float64), duet.follower.astype(np.float64)
        n = len(lead)
        other_lead = other.leader[np.minimum(np.arange(n), len(other.leader) - 1)].astype(np.float64)
        wav, _ = accompaniment_for_motion(lead, default_cache_dir().parent / "accompaniment", "leader")
        conditions: dict[str, list[np.ndarray]] = {"model": [], "C1 leader 4 s late": [], "C2 another leader": [],
                                                   "C3 solo placed": []}
        slides: dict[str, list[float]] = {name: [] for name in conditions}
        unjoined: dict[str, list[float]] = {name: [] for name in conditions}  # hand contact without join_hands
        for seed in range(args.seeds):
            options = GenerateOptions(sampling=SamplingOptions(greedy=False, seed=seed), rotations=False)
            for name, leader in (("model", lead), ("C1 leader 4 s late", delayed(lead, int(SHIFT_S * 60))),
                                 ("C2 another leader", other_lead)):
                dance = chor.accompany(leader, options=options)
                conditions[name].append(dance.joints)
                slides[name].append(placement_slide_cm(chor.model.vqvae, dance, leader))
                apart = follower_joints(chor.model.vqvae, dance.codes_up, dance.codes_down,
                                        dance.meta["relative_position_codes"], leader, hold_hands=False)
                unjoined[name].append(m.hand_contact_share(leader[: len(apart)], apart))
            solo = chor.generate(wav, replace(options, sampling=SamplingOptions(greedy=False, seed=seed)))
            conditions["C3 solo placed"].append(placed_solo(solo.joints, lead, mean_offset))
        real_distance = m.pelvis_distance(lead, real)
        real_speed = mean_joint_speed(real, 60.0)
        real_skating = foot_skating_ratio(real, 60.0)
        beds: dict[str, np.ndarray] = {}
        summary: dict = {"real follower": {**m.duet_measures(lead, real), "distance_w1_m": 0.0}}
        for name, followers in conditions.items():
            measures = [m.duet_measures(lead[: len(f)], f) for f in followers]
            row = {k: float(np.nanmean([x[k] for x in measures])) for k in measures[0]}
            row["distance_w1_m"] = m.distance_w1(
                np.concatenate([m.pelvis_distance(lead[: len(f)], f) for f in followers]), real_distance)
            row["speed_vs_real"] = float(np.mean([mean_joint_speed(f, 60.0) for f in followers]) / real_speed)
            row["skating_vs_real"] = float(np.mean([foot_skating_ratio(f, 60.0) for f in followers]) /
                                           max(real_skating, 1e-6))
            row["longest_freeze_s"] = float(max(longest_frozen_seconds(f, 60.0) for f in followers))
            row["placement_slide_cm"] = float(np.mean(slides[name])) if slides[name] else float("nan")
            row["hand_contact_unjoined"] = float(np.mean(unjoined[name])) if unjoined[name] else float("nan")
            summary[name] = row
            beds[name] = np.concatenate([m.beat_echoes(lead[: len(f)], f) for f in followers])
        diff, lo, hi = bootstrap_difference(beds["model"], beds["C1 leader 4 s late"])
        summary["bed_model_minus_C1"] = {"difference": diff, "ci95": [lo, hi]}
        results["conditions"][duet.take_id] = summary
    # time: 20 s of a leader, one thread
    lead20 = held[0].leader[:1200].astype(np.float64)
    t0 = time.perf_counter()
    chor.accompany(lead20, options=GenerateOptions(rotations=False))
    results["seconds_for_20s_leader"] = time.perf_counter() - t0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for take, summary in results["conditions"].items():
        print(f"== {take} ({args.seeds} seeds)")
        keys = ["median_distance_m", "distance_w1_m", "in_front", "facing_each_other", "torso_clash",
                "hand_contact", "bed", "speed_correlation", "mirror_copy_distance_m", "speed_vs_real",
                "skating_vs_real", "longest_freeze_s", "placement_slide_cm", "hand_contact_unjoined"]
        names = [n for n in summary if isinstance(summary[n], dict) and "bed" in summary[n]]
        print(f"{'':<24}" + "".join(f"{n[:18]:>20}" for n in names))
        for key in keys:
            print(f"{key:<24}" + "".join(f"{summary[n].get(key, float('nan')):>20.3f}" for n in names))
        print("BED model - C1: {difference:.3f}, 95 % interval [{ci95[0]:.3f}, {ci95[1]:.3f}]".format(
            **summary["bed_model_minus_C1"]))
    print("real takes' range: " + ", ".join(f"{k} {v[0]:.2f}-{v[1]:.2f}" for k, v in real_range.items()))
    print(f"20 s of a leader accompanied in {results['seconds_for_20s_leader']:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
