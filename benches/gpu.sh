#!/usr/bin/env bash
# One prepared run for a GPU machine with a short time budget (docs/benchmarks.md, "Training on a
# GPU"). Two halves:
#
#   bash benches/gpu.sh prepare          here: builds arbor with --features gpu-wgpu (release),
#                                        packs it stripped and compressed into .gpu/, with the
#                                        SmolLM2 tokenizer and the Vulkan loader packages (.gl/)
#   bash benches/gpu.sh run [--device wgpu|cpu] [--bin PATH] [--out DIR] [--shapes "A B"]
#                           [--algos "dpo oreo"] [--steps N] [--no-check]
#                                        there (or here with --device cpu as the dry run):
#     1. `arbor bench device`: DPO, OREO and TPO losses and gradients on the device against flex;
#     2. per shape (smollm2-135m, smollm2-1.7b; random weights, SmolLM2's tokenizer) a DPO and an
#        OREO step with `arbor bench train`, PyTorch on CUDA beside it (float32 both);
#   each part under its own timeout, results appended as they come to OUT (device.json,
#   train.jsonl, log.txt), so a run cut short still returns what it measured.
#
# With the device tool: carry .gpu and .gl, command `bash benches/gpu.sh run`, timeout ≤ 540 s.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
shift || true

if [[ $mode == prepare ]]; then
  set -e
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/arbor/target}
  cargo build --release --features gpu-wgpu
  mkdir -p .gpu .gl
  mkdir -p .git/info
  grep -qx '/.gpu/' .git/info/exclude || echo /.gpu/ >> .git/info/exclude
  grep -qx '/.gl/' .git/info/exclude || echo /.gl/ >> .git/info/exclude
  strip -o .gpu/arbor "$CARGO_TARGET_DIR/release/arbor"
  xz -T0 -6 -f .gpu/arbor
  # The tokenizer travels inside a one-layer model (a few MB), not the 100 MB GGUF.
  rm -rf .gpu/tok
  "$CARGO_TARGET_DIR/release/arbor" model init --tokenizer embedded --layers 1 --d-model 8 \
    --heads 1 --kv-heads 1 --d-ff 8 --out .gpu/tok > /dev/null
  rm -f .gpu/tok/model.safetensors
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  mkdir -p /tmp/amd64/partial
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  du -sh .gpu .gl
  exit 0
fi

device=wgpu bin="" out=${OUT:-/tmp/arbor-gpu} shapes="smollm2-135m smollm2-1.7b" steps=3
algos="dpo oreo" check=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --shapes) shapes=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --algos) algos=$2; shift 2 ;;
    --no-check) check=0; shift ;;
    *) echo "gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
log() { echo "[$(date +%T)] $*" | tee -a "$out/log.txt"; }

if [[ -z $bin ]]; then
  bin=/tmp/arbor-gpu-bin
  xz -dc .gpu/arbor.xz > $bin && chmod +x $bin || { log "no .gpu/arbor.xz: run 'bash benches/gpu.sh prepare' first"; exit 1; }
fi
if [[ -d .gl ]] && ls .gl/*.deb > /dev/null 2>&1 && ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
if [[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]]; then
  export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
fi

torch_args=(--skip-torch)
if python3 -c 'import torch, transformers' 2> /dev/null; then
  tdev=cpu
  [[ $device != cpu ]] && python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null && tdev=cuda
  torch_args=(--python python3 --torch-device "$tdev")
fi
tok=.gpu/tok
[[ -d $tok ]] || tok=embedded

{ command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } > "$out/machine.txt" 2>&1
echo "cpus $(nproc), device $device, torch ${torch_args[*]}, Vulkan ICDs: ${VK_DRIVER_FILES:-$(ls /usr/share/vulkan/icd.d 2> /dev/null | tr '\n' ' ')}" >> "$out/machine.txt"
log "machine: $(tr '\n' ' ' < "$out/machine.txt")"

if [[ $check == 1 ]]; then
  log "bench device ($device against the CPU)"
  timeout 150 $bin bench device --device "$device" > "$out/device.json" 2>> "$out/log.txt"
  log "bench device: exit $?: $(head -c 300 "$out/device.json")"
fi

for shape in $shapes; do
  model=/tmp/arbor-gpu-$shape
  if [[ ! -d $model ]]; then
    if [[ $shape == tiny ]]; then
      init=(--layers 2 --d-model 64 --heads 4 --kv-heads 2 --d-ff 128)
    else
      init=(--shape "$shape" --tokenizer "$tok")
    fi
    log "init $shape"
    timeout 240 $bin model init "${init[@]}" --out "$model" >> "$out/log.txt" 2>&1 || { log "init $shape failed"; continue; }
  fi
  for algo in $algos; do
    log "bench train $shape $algo"
    r=$(timeout 200 $bin bench train --model "$model" --algo "$algo" --device "$device" \
      --steps "$steps" "${torch_args[@]}" 2>> "$out/log.txt")
    rc=$?
    log "bench train $shape $algo: exit $rc"
    [[ -n $r ]] && echo "{\"shape\": \"$shape\", \"result\": $r}" >> "$out/train.jsonl"
  done
done
log done
