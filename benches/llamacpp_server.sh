# Sourced by the benches that drive a llama.cpp server: starts one xllamacpp server of the
# embedded GGUF (PARALLEL slots of CTX_PER_SLOT tokens, 2 threads) on a loopback port, waits for
# it, and defines `metric NAME` (a /metrics counter), `capacity` (PARALLEL concurrent
# generations of 128 tokens with ignore_eos, twice: `arbor bench model`'s N-stream figure),
# `measured` (a command's wall time and the server's work meanwhile) and `mix_capacity` (the
# capacity on the last measured command's mix of prompt and generated tokens).
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
# did meanwhile (generated and prompt tokens per second, mean busy slots per decode); the
# token counts are kept in $WORK/measured for `mix_capacity`.
measured() {
  local label=$1; shift
  local g0 p0 t0 t1
  g0=$(metric tokens_predicted_total); p0=$(metric prompt_tokens_total); t0=$(date +%s.%N)
  "$@" || true
  t1=$(date +%s.%N)
  "$PY" -c '
import sys
label, out, g0, g1, p0, p1, t0, t1, busy = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
s = t1 - t0
open(out, "w").write(f"{g1 - g0:.0f} {p1 - p0:.0f} {s:.1f}\n")
print(f"{label}: {s:.0f} s; server generated {g1 - g0:.0f} tokens ({(g1 - g0) / s:.1f}/s), read {p1 - p0:.0f} prompt tokens ({(p1 - p0) / s:.1f}/s); busy slots per decode (server lifetime mean) {busy:.2f}")
' "$label" "$WORK/measured" "$g0" "$(metric tokens_predicted_total)" "$p0" "$(metric prompt_tokens_total)" "$t0" "$t1" "$(metric n_busy_slots_per_decode)"
}

# `mix_capacity`: like `capacity`, but each of the PARALLEL concurrent requests first reads a
# prompt of fresh random token ids (no prompt cache can serve it) sized so that prompt and
# generated tokens stand in the ratio the last `measured` command's server work had (llama.cpp
# counts only the prompt tokens it processed, not those its cache served), 128 generated each,
# twice. This is the most a client could get from this server on that job's mix; a job's
# generated tokens/s is compared with it.
mix_capacity() {
  "$PY" - "$URL" "$PARALLEL" "$WORK/measured" <<'PY'
import json, random, sys, threading, time, urllib.request
url, n, measured = sys.argv[1], int(sys.argv[2]), sys.argv[3]
gen_job, prompt_job, secs_job = map(float, open(measured).read().split())
gen = 128
plen = max(1, round(gen * prompt_job / gen_job))
def metric(name):
    for l in urllib.request.urlopen(url + "/metrics").read().decode().splitlines():
        if l.startswith("llamacpp:" + name + " "):
            return float(l.split()[1])
def one(seed):
    rng = random.Random(seed)
    body = {"prompt": [rng.randrange(1000, 40000) for _ in range(plen)], "n_predict": gen,
            "ignore_eos": True, "temperature": 0.8, "cache_prompt": False}
    req = urllib.request.Request(url + "/completion", json.dumps(body).encode(), {"content-type": "application/json"})
    urllib.request.urlopen(req).read()
t0, g0, p0 = time.time(), metric("tokens_predicted_total"), metric("prompt_tokens_total")
for r in range(2):
    ts = [threading.Thread(target=one, args=(r * n + i,)) for i in range(n)]
    [t.start() for t in ts]; [t.join() for t in ts]
secs = time.time() - t0
g, p = metric("tokens_predicted_total") - g0, metric("prompt_tokens_total") - p0
cap = g / secs
print(f"mix capacity: {n} streams x ({plen} prompt + {gen} generated tokens), twice: "
      f"{g:.0f} generated ({cap:.1f}/s) and {p:.0f} prompt tokens ({p / secs:.1f}/s) in {secs:.1f} s")
job = gen_job / secs_job
print(f"job against it: {job:.1f} generated tokens/s = {100 * job / cap:.0f}% of the mix capacity "
      f"(prompt:generated {prompt_job / gen_job:.2f} in the job)")
PY
}
