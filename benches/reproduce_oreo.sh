#!/usr/bin/env bash
# The OREO paper's comparison at arbor's scale: from the embedded SmolLM2-135M on the math
# environment, build trees with the model itself, then train rejection sampling (SFT on correct
# trajectories), DPO and OREO with the same data budget (the same trees, the same number of
# optimizer steps and batch size), and report held-out greedy accuracy for each and value-guided
# beam search with OREO's critic. CPU only; about 30 minutes on 2 cores with the defaults
# (one-step problems: SmolLM2-135M solves none of the 2-step ones in 26 MCTS trees).
#   bash benches/reproduce_oreo.sh [ARBOR_BINARY] [WORK_DIR]
set -euo pipefail
A=${1:-target/release/arbor}
W=${2:-/tmp/arbor-reproduce}
TREES=${TREES:-24}; STEPS=${STEPS:-8}; BATCH=${BATCH:-2}; N_EVAL=${N_EVAL:-40}; BEAM=${BEAM:-2}
mkdir -p "$W"
cat > "$W/env.toml" <<'TOML'
max_episode_steps = 3
[generator]
min_steps = 1
max_steps = 1
max_value = 10
TOML
E="--env math --env-config $W/env.toml"
[ -f "$W/trees/trees.jsonl" ] || $A search $E --trees "$TREES" --seed 2 --algo mcts --iterations 4 --width 3 --out "$W/trees"
for f in dpo oreo; do $A export --trees "$W/trees" --format $f --out "$W/$f.jsonl"; done
printf '[dpo]\nnll_weight = 0.0\n' > "$W/dpo.toml"
common="--model embedded --max-steps $STEPS --epochs 1000 --batch-size $BATCH --lr 1e-5 --quiet"
[ -f "$W/rs/model.safetensors" ] || $A train --algo sft --data "$W/oreo.jsonl" --out "$W/rs" $common
[ -f "$W/dpo/model.safetensors" ] || $A train --algo dpo --config "$W/dpo.toml" --data "$W/dpo.jsonl" --out "$W/dpo" $common
[ -f "$W/oreo/model.safetensors" ] || $A train --algo oreo --data "$W/oreo.jsonl" --out "$W/oreo" $common
echo "data: $(wc -l < "$W/dpo.jsonl") dpo pairs, $(wc -l < "$W/oreo.jsonl") trajectories ($(grep -c '"reward":1' "$W/oreo.jsonl") correct)"
ev="$E --n $N_EVAL --seed 999"
echo "base greedy: $($A eval $ev --model embedded)"
for m in rs dpo oreo; do echo "$m greedy: $($A eval $ev --model "$W/$m")"; done
echo "oreo value-beam B=$BEAM: $($A eval $ev --model "$W/oreo" --search value-beam --width "$BEAM" --temperature 0.8)"
