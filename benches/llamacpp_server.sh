# Sourced by the benches that drive a llama.cpp server: starts one xllamacpp server of the
# embedded GGUF (PARALLEL slots of CTX_PER_SLOT tokens, 2 threads) on a loopback port, waits for
# it, and defines `metric NAME` (a /metrics counter) and `capacity` (PARALLEL concurrent
# generations of 128 tokens with ignore_eos, twice: `arbor bench model`'s N-stream figure).
# Sets URL, WORK (a temp dir removed on exit), PY (the test venv's python).
PARALLEL=${PARALLEL:-8}; CTX_PER_SLOT=${CTX_PER_SLOT:-4096}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOME_=${ARBOR_HOME:-$HOME/.cache/arbor}
PY="$HOME_/venv/bin/python"
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
"$PY" "$ROOT/../shared/tools/serve_xllamacpp.py" --model "$HOME_/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --port "$PORT" --parallel "$PARALLEL" --ctx-per-slot "$CTX_PER_SLOT" --threads 2 > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
URL="http://127.0.0.1:$PORT"
for _ in $(seq 120); do curl -sf "$URL/health" >/dev/null && break; sleep 1; done

metric() { curl -s "$URL/metrics" | awk -v m="llamacpp:$1" '$1 == m {print $2}'; }

# GSM8K test questions as synth items: `gsm8k_items N FILE [with-reference]`.
gsm8k_items() {
  head -n "$1" "$ROOT/../shared/data/gsm8k/test.jsonl" | "$PY" -c '
import json, sys
ref = len(sys.argv) > 1
for i, l in enumerate(sys.stdin):
    d = json.loads(l)
    row = {"id": f"gsm8k-test-{i}", "prompt": d["question"]}
    if ref:
        row["reference"] = d["answer"].split("####")[-1].strip()
    print(json.dumps(row))
' ${3:+ref} > "$2"
}

capacity() {
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
}

# `measured LABEL COMMAND…`: runs the command, then prints its wall time and what the server
# did meanwhile (generated and prompt tokens per second, mean busy slots per decode).
measured() {
  local label=$1; shift
  local g0 p0 t0 t1
  g0=$(metric tokens_predicted_total); p0=$(metric prompt_tokens_total); t0=$(date +%s.%N)
  "$@" || true
  t1=$(date +%s.%N)
  "$PY" -c '
import sys
label, g0, g1, p0, p1, t0, t1, busy = sys.argv[1], *map(float, sys.argv[2:])
s = t1 - t0
print(f"{label}: {s:.0f} s; server generated {g1 - g0:.0f} tokens ({(g1 - g0) / s:.1f}/s), read {p1 - p0:.0f} prompt tokens ({(p1 - p0) / s:.1f}/s); busy slots per decode (server lifetime mean) {busy:.2f}")
' "$label" "$g0" "$(metric tokens_predicted_total)" "$p0" "$(metric prompt_tokens_total)" "$t0" "$t1" "$(metric n_busy_slots_per_decode)"
}
