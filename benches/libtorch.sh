#!/usr/bin/env bash
# arbor on burn's LibTorch backend: `--features libtorch` (PyTorch's CPU kernels, `--device
# libtorch`) and `--features gpu-cuda` (its CUDA device, `--device cuda`).
#
# tch 0.22 binds PyTorch 2.9.0. The venv gets pip's torch==2.9.0 (the CUDA build, which also runs
# on the CPU: one build serves both features) and transformers for the PyTorch side of
# `arbor bench train`; cargo builds against it with LIBTORCH_USE_PYTORCH=1, and the binary finds
# torch's shared libraries through LD_LIBRARY_PATH, which `run` sets.
#
#   bash benches/libtorch.sh venv                 the venv ($ARBOR_HOME/libtorch-venv)
#   bash benches/libtorch.sh build [FEATURES]     cargo build --release --features FEATURES
#                                                 (default libtorch; gpu-cuda also builds here)
#   bash benches/libtorch.sh run ARGS...          the built arbor with ARGS
#   bash benches/libtorch.sh bench [STEPS]        device check against flex, then DPO and OREO
#                                                 steps on flex, on LibTorch and in PyTorch
set -euo pipefail
cd "$(dirname "$0")/.."
export ARBOR_HOME=${ARBOR_HOME:-$HOME/.cache/arbor}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ARBOR_HOME/target}
venv=$ARBOR_HOME/libtorch-venv
mode=${1:-bench}
shift || true

if [[ $mode == venv || ! -x $venv/bin/python ]]; then
  if ! "$venv/bin/python" -c 'import torch, transformers; assert torch.__version__.startswith("2.9.0")' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q torch==2.9.0 transformers numpy
  fi
  [[ $mode == venv ]] && exit 0
fi

# torch-sys runs `python` from the active venv to find torch's headers and libraries.
export VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
torch_lib=$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$CARGO_TARGET_DIR/release/arbor

case $mode in
  build)
    cargo build --release --locked --features "${1:-libtorch}"
    ;;
  run)
    exec "$bin" "$@"
    ;;
  bench)
    steps=${1:-3}
    "$bin" bench device --device libtorch
    for algo in dpo oreo; do
      "$bin" bench train --algo "$algo" --batch 2 --steps "$steps" --skip-torch
      "$bin" bench train --algo "$algo" --batch 2 --steps "$steps" --device libtorch \
        --python "$venv/bin/python"
    done
    ;;
  *) echo "libtorch.sh: unknown mode $mode (venv, build, run, bench)" >&2; exit 2 ;;
esac
