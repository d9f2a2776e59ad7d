#!/usr/bin/env bash
# Reproduce the shipped default model (assets/default_model) from scratch on a CPU, from the real data
# in ../shared/data (set DANCE_SHARED to point elsewhere is not needed: the configs use ../shared/data).
#
#   training/train_default.sh            # every stage, then export to assets/default_model
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
stage decoder      training/configs/default_decoder.yaml   # the pose decoders on the frozen codes, for speed
stage gpt          training/configs/default_gpt.yaml
stage actor-critic training/configs/default_actor_critic.yaml

# The model's default decoding: sampled at temperature 1 (from seed 0 unless the user gives one), the style
# steered with guidance 2.5. Greedy decoding of this GPT collapses onto slow codes (0.15-0.36 m/s against
# 0.65-0.81 for the real takes) and at guidance 1 the ballet dances were closer to the salsa takes than
# to the ballet ones (assets/MODEL_CARD.md).
"$PY" -m training export --run runs/default_actor_critic --run runs/default_decoder -o assets/default_model \
    --name default --decoding '{"greedy": false, "temperature": 1.0, "style_guidance": 2.5}' \
    --description "Default model of the project: trained on CPU by training/train_default.sh \
(configs training/configs/default_*.yaml) on AIST++ slices and CMU dance capture (salsa, ballet/modern, street, \
Indian), with a style input; see assets/MODEL_CARD.md"
# The GPT run's default start (its most common first pair) is a near-standing pose; pick the start (and
# each style's) by how the dances from it move, on the actor-critic songs (never the held-out ones), then
# each style's temperature the same way (the styles with little data dance too slowly at 1.0).
"$PY" -m training choose-start --model assets/default_model --config training/configs/default_gpt.yaml \
    --song ../shared/data/music/vibe_ace.ogg --song ../shared/data/music/lets_go_fishin.ogg \
    --temperatures 1.0 1.1 1.2 1.3 1.4 1.5
# The duet's follower on this model's codes (the couples; salsa 11 held out), then into the model folder.
stage duet         training/configs/default_duet.yaml
"$PY" -m training add-follower --run runs/default_duet --model assets/default_model
# The follower's optional RL phase (feet that agree with where it places itself) runs too, but is not
# added: on the held-out couple it cost hand contact and BED (assets/MODEL_CARD.md, "Duet"). To try it:
#   python -m training add-follower --run runs/default_duet_rl --model <a copy of the model folder>
stage duet-rl      training/configs/default_duet_rl.yaml
echo "== exported assets/default_model ($(du -sh assets/default_model | cut -f1))"
# Then measure it on the held-out song (a few minutes; writes benchmarks/results/default_model.json),
# and the follower on the held-out couple (OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_duet.py):
#   OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_default_model.py --baseline <the previous release>
