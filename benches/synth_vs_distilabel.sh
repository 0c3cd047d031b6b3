#!/usr/bin/env bash
# `arbor synth` against distilabel 1.5.3 on one llama.cpp server (benches/llamacpp_server.sh),
# the same GSM8K test questions (no reference), the matching work: 2 candidates in one call
# (n = 2), one judge call in one order, no tools, no gate, the judge constrained to a JSON
# schema on both sides; up to 256 tokens per candidate and 512 per judge answer, temperatures
# 1.0 and 0.7. distilabel runs with batch 8 (the server's slots) and 50 (its default).
#   bash benches/synth_vs_distilabel.sh [ARBOR_BINARY] [ITEMS]
#   (knobs: PARALLEL=8, CTX_PER_SLOT=4096, DISTILABEL_PY=~/.cache/arbor/distilabel-venv/bin/python,
#   CLIENTS="arbor 8 50": which clients run, in that order: arbor and distilabel batch sizes;
#   one client per invocation gives each a fresh server, with no prompt cache from another)
set -euo pipefail
A=$(realpath "${1:-target/debug/arbor}")
N=${2:-40}
source "$(dirname "$0")/llamacpp_server.sh"
DPY=${DISTILABEL_PY:-$HOME_/distilabel-venv/bin/python}
if ! "$DPY" -c 'import distilabel' 2>/dev/null; then
  python3 -m venv "$(dirname "$(dirname "$DPY")")"
  "$DPY" -m pip install -q distilabel==1.5.3 openai requests
fi
gsm8k_items "$N" "$WORK/items.jsonl"
cat > "$WORK/synth.toml" <<TOML
candidates = 2
rounds = 1
both_orders = false
tool_use = "none"
judge_checks = []
no_gate = true
[target]
max_tokens = 256
temperature = 1.0
[judge]
max_tokens = 512
temperature = 0.7
TOML
capacity
CLIENTS=${CLIENTS:-arbor 8 50}
if [[ " $CLIENTS " == *" arbor "* ]]; then
measured "arbor synth" "$A" synth --config "$WORK/synth.toml" --input "$WORK/items.jsonl" --out "$WORK/arbor" \
  --target-url "$URL/v1" --target-model smollm2 --judge-url "$URL/v1" --judge-model smollm2 \
  --timeout-secs 600 2> "$WORK/synth.err"
grep -v '^\s*$' "$WORK/synth.err" | tail -n 3
echo "arbor: $(wc -l < "$WORK/arbor/journal.jsonl") items, $(wc -l < "$WORK/arbor/pairs.jsonl") pairs, $(wc -l < "$WORK/arbor/dead_letter.jsonl") dead letters"
fi
for batch in $CLIENTS; do
  [[ $batch == arbor ]] && continue
  measured "distilabel batch $batch" "$DPY" "$ROOT/benches/distilabel_synth.py" "$URL/v1" "$WORK/items.jsonl" "$batch" \
    --timeout 600 --max-tokens 256 --judge-max-tokens 512 --temperature 1.0 --judge-temperature 0.7 --json-schema \
    2> "$WORK/distilabel-$batch.err" | grep -E '^\{"items"|^distilabel batch' || true
done
