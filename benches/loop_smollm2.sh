#!/usr/bin/env bash
# `arbor loop` from SmolLM2-135M-Instruct on one-step math, π_t served by llama.cpp (the
# `llamacpp` backend: each policy exported as f16 GGUF and served by xllamacpp), training in burn
# on the CPU. Prints the loop's table: held-out greedy accuracy per iteration with Wilson
# intervals and the paired gain over the previous iteration (wins/losses, McNemar's z).
#   bash benches/loop_smollm2.sh [ARBOR_BINARY] [OUT_DIR]
# Knobs (environment): ALGO (sft), ITERATIONS (2), TASKS (200 per iteration), EVAL (500),
# EPOCHS (2), LR (1e-5), BATCH (4), PARALLEL (8 llama.cpp slots), NLL (DPO's NLL weight, 1:
# Iterative RPO), MAX_STEPS (optimizer steps at most per iteration: OREO trains on every
# trajectory, not only the correct ones), VALUE_LR (OREO's critic, 1e-5), EVAL_BEAM (K of the
# critic's comparison, 4), EVAL_TEMPERATURE (its sampling temperature, 0.8),
# CRITIC_TASKS (that comparison on the first N held-out tasks; default all), DEVICE (cpu; libtorch trains on PyTorch's kernels: build with
# `bash benches/libtorch.sh build` and pass that binary). A killed run resumes: rerun it.
set -euo pipefail
A=${1:-target/release/arbor}
OUT=${2:-/tmp/arbor-loop-smollm2}
ALGO=${ALGO:-sft}; ITERATIONS=${ITERATIONS:-2}; TASKS=${TASKS:-200}; EVAL=${EVAL:-500}
EPOCHS=${EPOCHS:-2}; LR=${LR:-1e-5}; BATCH=${BATCH:-4}; PARALLEL=${PARALLEL:-8}
NLL=${NLL:-1}; DEVICE=${DEVICE:-cpu}; VALUE_LR=${VALUE_LR:-1e-5}; EVAL_BEAM=${EVAL_BEAM:-4}
EVAL_TEMPERATURE=${EVAL_TEMPERATURE:-0.8}
max_steps=""; [ -n "${MAX_STEPS:-}" ] && max_steps="max_steps = $MAX_STEPS"
critic_tasks=""; [ -n "${CRITIC_TASKS:-}" ] && critic_tasks="critic_tasks = $CRITIC_TASKS"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CFG="$OUT.toml"
cat > "$CFG" <<TOML
env = "math"
backend = "llamacpp"
tasks_per_iteration = $TASKS
eval_tasks = $EVAL
eval_seed = 999
eval_beam = $EVAL_BEAM
eval_temperature = $EVAL_TEMPERATURE
$critic_tasks
concurrency = $PARALLEL
device = "$DEVICE"
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
value_lr = $VALUE_LR
batch_size = $BATCH
$max_steps
[train.dpo]
nll_weight = $NLL
TOML
if [ "$DEVICE" = libtorch ] || [ "$DEVICE" = cuda ]; then
  TORCH_LIB=$("${ARBOR_HOME:-$HOME/.cache/arbor}/libtorch-venv/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
resume=""; [ -f "$OUT/loop.json" ] && resume="--resume"
"$A" loop --model embedded --iterations "$ITERATIONS" --config "$CFG" --out "$OUT" $resume
