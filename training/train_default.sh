#!/usr/bin/env bash
# Reproduce the shipped default model (assets/default_model) from scratch on a CPU, from the real data
# in ../shared/data (set DANCE_SHARED to point elsewhere is not needed: the configs use ../shared/data).
#
#   training/train_default.sh            # all four stages, then export to assets/default_model
#   PY=python3 training/train_default.sh # another interpreter
#
# Every stage resumes from its last checkpoint, so the script can be killed and started again; a stage
# that already reached its step count is a no-op. Runs go to runs/default_*, logs to runs/default_logs/.
# One torch thread per process: on a small shared machine more threads only spin against each other.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p runs/default_logs

stage() {  # stage NAME CONFIG
    local start=$SECONDS
    echo "== $1 ($2)"
    "$PY" -m training "$1" --config "$2" -q 2>&1 | tee -a "runs/default_logs/$1.log"
    echo "== $1 took $((SECONDS - start)) s" | tee -a runs/default_logs/times.txt
}

stage vqvae        training/configs/default_vqvae.yaml
stage root         training/configs/default_root.yaml
stage gpt          training/configs/default_gpt.yaml
stage actor-critic training/configs/default_actor_critic.yaml

"$PY" -m training export --run runs/default_actor_critic --run runs/default_root -o assets/default_model \
    --name default --description "Default model of the project: trained on CPU by training/train_default.sh \
(configs training/configs/default_*.yaml) on AIST++ slices and CMU dance capture; see assets/MODEL_CARD.md"
# The GPT run's default start (its most common first pair) is a near-standing pose; pick the start by how
# the dances from it move, on the actor-critic songs (never the held-out one).
"$PY" -m training choose-start --model assets/default_model --config training/configs/default_gpt.yaml \
    --song ../shared/data/music/vibe_ace.ogg --song ../shared/data/music/lets_go_fishin.ogg
echo "== exported assets/default_model ($(du -sh assets/default_model | cut -f1))"
# Then measure it on the held-out song (a few minutes; writes benchmarks/results/default_model.json):
#   OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_default_model.py
