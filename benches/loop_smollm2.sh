#!/usr/bin/env bash
# `arbor loop` from SmolLM2-135M-Instruct on one-step math, π_t served by llama.cpp (the
# `llamacpp` backend: each policy exported as f16 GGUF and served by xllamacpp), training in burn
# on the CPU. Prints the loop's table: held-out greedy accuracy per iteration with Wilson
# intervals and the paired gain over the previous iteration (wins/losses, McNemar's z).
#   bash benches/loop_smollm2.sh [ARBOR_BINARY] [OUT_DIR]
# Knobs (environment): ALGO (sft), ITERATIONS (2), TASKS (200 per iteration), EVAL (500),
# EPOCHS (2), LR (1e-5), BATCH (4), PARALLEL (8 llama.cpp slots). A killed run resumes: rerun it.
set -euo pipefail
A=${1:-target/release/arbor}
OUT=${2:-/tmp/arbor-loop-smollm2}
ALGO=${ALGO:-sft}; ITERATIONS=${ITERATIONS:-2}; TASKS=${TASKS:-200}; EVAL=${EVAL:-500}
EPOCHS=${EPOCHS:-2}; LR=${LR:-1e-5}; BATCH=${BATCH:-4}; PARALLEL=${PARALLEL:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CFG="$OUT.toml"
cat > "$CFG" <<TOML
env = "math"
backend = "llamacpp"
tasks_per_iteration = $TASKS
eval_tasks = $EVAL
eval_seed = 999
concurrency = $PARALLEL
[llamacpp]
script = "$ROOT/../shared/tools/serve_xllamacpp.py"
parallel = $PARALLEL
[search]
algo = "mcts"
iterations = 8
width = 3
[policy]
kind = "llm"
[train]
algo = "$ALGO"
epochs = $EPOCHS
lr = $LR
batch_size = $BATCH
TOML
resume=""; [ -f "$OUT/loop.json" ] && resume="--resume"
"$A" loop --model embedded --iterations "$ITERATIONS" --config "$CFG" --out "$OUT" $resume
