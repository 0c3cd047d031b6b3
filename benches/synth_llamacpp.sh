#!/usr/bin/env bash
# `arbor synth` with its defaults (4 candidates, judge with tools in both orders, reward gate)
# on GSM8K test questions, target and judge on one llama.cpp server of the embedded GGUF
# (xllamacpp, PARALLEL slots of CTX_PER_SLOT tokens, 2 threads), beside the server's own
# capacity measured in the same run (benches/llamacpp_server.sh): decode only, and on the job's
# own mix of prompt and generated tokens.
#   bash benches/synth_llamacpp.sh [ARBOR_BINARY] [ITEMS]
#   (knobs: PARALLEL=8, CTX_PER_SLOT=4096, TIMEOUT=120)
set -euo pipefail
A=$(realpath "${1:-target/debug/arbor}")
N=${2:-40}
TIMEOUT=${TIMEOUT:-120}
source "$(dirname "$0")/llamacpp_server.sh"
gsm8k_items "$N" "$WORK/items.jsonl" ref
capacity
measured "arbor synth (defaults)" "$A" synth --input "$WORK/items.jsonl" --out "$WORK/out" \
  --target-url "$URL/v1" --target-model smollm2 --judge-url "$URL/v1" --judge-model smollm2 \
  --timeout-secs "$TIMEOUT" 2> "$WORK/synth.err"
grep -v '^\s*$' "$WORK/synth.err" | tail -n 4
mix_capacity
"$PY" - "$WORK/out" <<'PY'
import collections, json, sys
out = sys.argv[1]
journal = [json.loads(l) for l in open(out + "/journal.jsonl")]
print(f"job: {len(journal)} items: {dict(collections.Counter(r['status'] for r in journal))}")
dead = [json.loads(l)["cause"] for l in open(out + "/dead_letter.jsonl")]
for c in collections.Counter(d.split(":")[0][:80] for d in dead).most_common():
    print("dead letter cause:", c)
PY
