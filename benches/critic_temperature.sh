#!/usr/bin/env bash
# Value-guided search against sampling at several temperatures, on a policy with an OREO critic:
# greedy, one sample, the majority of K samples, best-of-K by the critic's value and value-guided
# beam of width K, on the same held-out tasks. Prints one TSV row per (temperature, strategy).
#   bash benches/critic_temperature.sh ARBOR MODEL_DIR ENV_TOML [TEMPS] [N] [K]
# The tiny OREO loop of the learning test leaves its policies in
# $CARGO_TARGET_DIR/tmp/loop-learning/oreo/iter-<t>/model (and env.toml one directory up).
set -euo pipefail
A=$1; MODEL=$2; ENV=$3
TEMPS=${4:-"0.2 0.4 0.6 0.8"}; N=${5:-800}; K=${6:-4}
ev() { "$A" eval --env math --env-config "$ENV" --model "$MODEL" --n "$N" --seed 999 --width "$K" "$@" 2>/dev/null | tail -1; }
acc() { python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); a,(lo,hi)=r["accuracy"],r["ci95"]; print("%.1f\t[%.1f, %.1f]" % (100*a, 100*lo, 100*hi))'; }
printf 'temperature\tstrategy\taccuracy\twilson95\n'
printf -- '-\tgreedy\t%s\n' "$(ev --search greedy | acc)"
for t in $TEMPS; do
  for s in sample majority best-of-n value-beam; do
    printf '%s\t%s\t%s\n' "$t" "$s" "$(ev --search "$s" --temperature "$t" | acc)"
  done
done
