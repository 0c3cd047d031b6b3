#!/usr/bin/env bash
# `arbor synth` with its defaults (4 candidates, judge with tools in both orders, reward gate)
# on GSM8K test questions, target and judge on one llama.cpp server of the embedded GGUF
# (xllamacpp, PARALLEL slots, 2 threads), beside the server's own capacity measured in the same
# run: PARALLEL concurrent generations of 128 tokens (ignore_eos), as `arbor bench model`'s
# N-stream figure does. Generation tokens/s are the server's (`/metrics`
# llamacpp:tokens_predicted_total) over wall time.
#   bash benches/synth_llamacpp.sh [ARBOR_BINARY] [ITEMS]      (knobs: PARALLEL=8, TIMEOUT=120)
set -euo pipefail
A=${1:-target/debug/arbor}
N=${2:-40}
PARALLEL=${PARALLEL:-8}; TIMEOUT=${TIMEOUT:-120}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOME_=${ARBOR_HOME:-$HOME/.cache/arbor}
PY="$HOME_/venv/bin/python"
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
"$PY" "$ROOT/../shared/tools/serve_xllamacpp.py" --model "$HOME_/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --port "$PORT" --parallel "$PARALLEL" --threads 2 > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
URL="http://127.0.0.1:$PORT"
for _ in $(seq 120); do curl -sf "$URL/health" >/dev/null && break; sleep 1; done
head -n "$N" "$ROOT/../shared/data/gsm8k/test.jsonl" | "$PY" -c '
import json, sys
for i, l in enumerate(sys.stdin):
    d = json.loads(l)
    print(json.dumps({"id": f"gsm8k-test-{i}", "prompt": d["question"], "reference": d["answer"].split("####")[-1].strip()}))
' > "$WORK/items.jsonl"

predicted() { curl -s "$URL/metrics" | awk '/^llamacpp:tokens_predicted_total/ {print $2}'; }

# Capacity: PARALLEL streams of 128 tokens at once, twice.
"$PY" - "$URL" "$PARALLEL" <<'PY'
import json, sys, threading, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
def tokens():
    for l in urllib.request.urlopen(url + "/metrics").read().decode().splitlines():
        if l.startswith("llamacpp:tokens_predicted_total"):
            return float(l.split()[1])
def one(i):
    body = {"messages": [{"role": "user", "content": f"Tell a long story about a fox, number {i}."}], "max_tokens": 128, "ignore_eos": True, "temperature": 0.8}
    urllib.request.urlopen(urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(), {"content-type": "application/json"})).read()
t0, k0 = time.time(), tokens()
for r in range(2):
    ts = [threading.Thread(target=one, args=(r * n + i,)) for i in range(n)]
    [t.start() for t in ts]; [t.join() for t in ts]
secs, k = time.time() - t0, tokens() - k0
print(f"capacity: {n} streams x 128 tokens, twice: {k:.0f} tokens in {secs:.1f}s = {k / secs:.1f} tokens/s")
PY

before=$(predicted); t0=$(date +%s.%N)
"$A" synth --input "$WORK/items.jsonl" --out "$WORK/out" --target-url "$URL/v1" --target-model smollm2 \
  --judge-url "$URL/v1" --judge-model smollm2 --timeout-secs "$TIMEOUT" 2> "$WORK/synth.err" || true
t1=$(date +%s.%N); after=$(predicted)
grep -v '^\s*$' "$WORK/synth.err" | tail -n 4
"$PY" - "$WORK/out" "$before" "$after" "$t0" "$t1" <<'PY'
import collections, json, sys
out, before, after, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
journal = [json.loads(l) for l in open(out + "/journal.jsonl")]
status = collections.Counter(r["status"] for r in journal)
dead = [json.loads(l)["cause"] for l in open(out + "/dead_letter.jsonl")]
secs = t1 - t0
print(f"job: {len(journal)} items in {secs / 60:.1f} min ({len(journal) / secs:.3f} items/s): {dict(status)}; "
      f"server generated {after - before:.0f} tokens = {(after - before) / secs:.1f} tokens/s, {(after - before) / max(len(journal), 1):.0f} per item")
for c in collections.Counter(d.split(":")[0][:80] for d in dead).most_common():
    print("dead letter cause:", c)
PY
