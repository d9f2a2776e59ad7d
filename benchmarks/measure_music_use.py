"""Which part of the music a trained GPT reads: its cross-entropy with the music changed in four ways.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_music_use.py \
        [--run runs/default_gpt --run runs/default_actor_critic] [--config training/configs/default_gpt.yaml]
        [--model assets/default_model [--song S ...]]

Teacher-forced cross-entropy (nats per code, mean of the up and down streams) of each run's GPT on
``--windows`` of the GPT stage's training windows (the config's data and the codes cached in its run
folder: the runs of ``training/train_default.sh`` must be there), with each window's

* own music (as trained);
* music shifted later by 1, 2 or 4 tokens (133 ms each): the same song, its beats out of phase with
  the motion (at the accompaniments' 90-130 bpm a beat is 3.5-5 tokens, so 2 tokens is about half one);
* another window's music (a random other window, its style kept);
* no music (zeros, the standardised features' mean).

A GPT that places its moves on the beat pays for the shift; one that reads the music only to tell which
take and tempo it is in pays for another window's music and hardly for the shift. The cost of the shift
is also printed by position in the window: a GPT that reads the beat only where its own few codes of
history cannot tell it pays there and not later. That tells why a
model alone does not land on the beat (assets/MODEL_CARD.md).

With ``--model``: the model's dances without beat sync (styles "any" and "salsa", seeds 1-5, each song)
scored against the song's beats moved by -32..+32 frames, and the same for the song shuffled in time
(``training.metrics.beats.shuffled_in_time``): a model that lands its moves a fixed time before or after
the beat would stand out from the control at that lag.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHIFTS = (1, 2, 4)
POSITIONS = (0, 1, 2, 3, 7, 15, 28)  # window positions whose cost of a shift is printed


def cross_entropies(gpt, stage, n_windows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{condition: nats per code at each of the 29 target positions of a window} of ``gpt`` on
    ``n_windows`` random windows of the GPT ``stage`` (position k has k + 1 codes of history)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(stage.num_windows, generator=g)[:n_windows]
    last_row = len(stage.music) - 1
    span = torch.arange(stage.n_tokens)
    own = stage.music_rows[idx, None] + span  # (N, 30) rows of each window's own music
    others = torch.randperm(stage.num_windows, generator=g)[:n_windows]
    rows = {"own music": own,
            **{f"shifted {k} token{'s' * (k > 1)} later": (own - k).clamp(min=0) for k in SHIFTS},
            "another window's music": stage.music_rows[others, None] + span,
            "no music": None}
    out = {}
    for name, music_rows in rows.items():
        total, count = np.zeros(stage.n_tokens - 1), 0
        for start in range(0, len(idx), 100):
            i = slice(start, start + 100)
            up, down = stage.codes_up[idx[i]], stage.codes_down[idx[i]]
            if music_rows is None:
                music = torch.zeros(len(up), stage.n_tokens, stage.music.shape[1])
            else:
                music = stage.music[music_rows[i].clamp(max=last_row)]
            style = stage.styles[idx[i]] if gpt.config.n_styles else None
            with torch.inference_mode():
                logits_up, logits_down = gpt(up[:, :-1], down[:, :-1], music[:, 1:], style=style)
            per_code = (F.cross_entropy(logits_up.transpose(1, 2), up[:, 1:], reduction="none")
                        + F.cross_entropy(logits_down.transpose(1, 2), down[:, 1:], reduction="none")) / 2
            total += per_code.sum(0).numpy()
            count += len(up)
        out[name] = total / count
    return out


def lag_profile(model_dir: Path, songs: list[Path], lags: range = range(-32, 33, 4),
                seeds: range = range(1, 6)) -> dict[int, tuple[float, float]]:
    """{lag in frames: (mean beat-align score of the dances, of the shuffled-music dances)} with the
    music beats moved by the lag."""
    import dataclasses

    from engine.generate import Choreographer, GenerateOptions
    from training.metrics.beats import beat_align_score, shuffled_in_time

    chor = Choreographer(model_dir)
    sums = {lag: np.zeros(2) for lag in lags}
    count = 0
    for song in songs:
        features = chor.features(song)
        beats = np.asarray(features.beats)
        for style in ("any", "salsa"):
            for seed in seeds:
                options = GenerateOptions(rotations=False, style=style, beat_sync=None)
                options = dataclasses.replace(options, sampling=dataclasses.replace(options.sampling, greedy=False,
                                                                                    seed=seed))
                dance = chor.generate(song, options, features=features).joints
                control = chor.generate(song, options, features=shuffled_in_time(features, 0)).joints
                for lag in lags:
                    sums[lag] += [beat_align_score(beats + lag, dance) or 0.0,
                                  beat_align_score(beats + lag, control) or 0.0]
                count += 1
    return {lag: (float(v[0] / count), float(v[1] / count)) for lag, v in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="a gpt or actor-critic run (default: runs/default_gpt and runs/default_actor_critic)")
    parser.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "default_gpt.yaml",
                        help="the GPT stage config whose windows and cached codes to read")
    parser.add_argument("--windows", type=int, default=1500)
    parser.add_argument("--model", type=Path, default=None, help="also the lag profile of this model's dances")
    parser.add_argument("--song", type=Path, action="append", default=[],
                        help="songs for the lag profile (default: Hungarian Dance No. 5 and the demo song)")
    args = parser.parse_args()

    import torch

    from engine.models.gpt import CrossCondGPT
    from training.config import load_config
    from training.stages.common import gpt_weights_of, read_run
    from training.stages.gpt import GPTStage

    torch.set_num_threads(1)
    cfg = load_config(args.config)
    stage = GPTStage(cfg, Path(cfg.run_dir))
    runs = args.run or [REPO / "runs" / "default_gpt", REPO / "runs" / "default_actor_critic"]
    for run in runs:
        state = read_run(run, ("gpt", "actor-critic"))
        gpt_config, weights = gpt_weights_of(state)
        gpt = CrossCondGPT(gpt_config)
        gpt.load_state_dict(weights, strict=True)
        scores = cross_entropies(gpt.eval(), stage, args.windows)
        base = scores["own music"]
        print(f"{run} ({state['stage']}), {min(args.windows, stage.num_windows)} training windows:")
        for name, ce in scores.items():
            print(f"  {name:26} {ce.mean():.4f} nats per code ({ce.mean() - base.mean():+.4f})")
        late = scores["shifted 2 tokens later"] - base
        print("  2 tokens later, by the codes of history before the target: "
              + ", ".join(f"{k + 1}: {late[k]:+.3f}" for k in POSITIONS if k < len(late)))
    if args.model is not None:
        songs = args.song or [REPO.parent / "shared" / "data" / "music" / "hungarian_dance_5.ogg",
                              REPO / "assets" / "demo_song.ogg"]
        print(f"{args.model}: beat-align of the dances without beat sync, the music beats moved by a lag")
        for lag, (dance, control) in lag_profile(args.model, songs).items():
            print(f"  lag {lag:+3d} frames: {dance:.3f}, shuffled music {control:.3f} ({dance - control:+.3f})")


if __name__ == "__main__":
    main()
