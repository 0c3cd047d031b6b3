#!/usr/bin/env bash
# `arbor bench judge` with a llama.cpp server of the embedded GGUF as the judge (xllamacpp,
# PARALLEL slots, 2 threads; benches/llamacpp_server.sh), the same labelled sets and setups as
# the embedded judge's table in docs/benchmarks.md.
#   bash benches/judge_llamacpp.sh [ARBOR_BINARY] [bench judge flags, e.g. --sets slips,code --pairs 30]
set -euo pipefail
A=$(realpath "${1:-target/debug/arbor}")
shift || true
source "$(dirname "$0")/llamacpp_server.sh"
cd "$ROOT"
"$A" bench judge --url "$URL/v1" --model smollm2 "$@"
