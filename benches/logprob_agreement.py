#!/usr/bin/env python3
"""How close the embedded model's quantized log-probs are to llama.cpp's and to the float32
reference, teacher-forced along the same token paths (the golden prompts with the reference's
greedy continuations), for docs/benchmarks.md.

usage: python3 benches/logprob_agreement.py   (from the repository root, after a release build
       of the example: cargo build --release -p arbor-model --example logprob_agreement)

For every pair of implementations it prints the mean and largest |Δ log-prob| over the first
one's top-5 ids at every position. Implementations: llama.cpp (xllamacpp, the same GGUF,
n_probs at each prefix), the float32 reference (golden file, and arbor's burn path), and the
native decoder with each kernel level this CPU has (same integer sums, different float
summation order) — the last pair is the noise floor of quantized activations.
"""
import json, os, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
EXAMPLE = os.path.join(TARGET, "release", "examples", "logprob_agreement")
PY = os.environ.get("ARBOR_PYTHON", sys.executable)
PORT = 8731

cases = [json.loads(l) for l in open(os.path.join(SHARED, "golden/smollm2/forward_cases.jsonl"))]
paths = [c["prompt_ids"] + c["reference_greedy_ids"] for c in cases]
home = os.environ.get("ARBOR_HOME", os.path.expanduser("~/.cache/arbor"))
model = os.path.join(home, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def tops_from_rows(rows):
    return [{int(i): float(lp) for i, lp in r} for r in rows]


impls = {}
# The float32 reference as the golden file has it (top 5 only).
impls["f32 reference"] = [[{i: lp for i, lp in zip(t["ids"], t["logprobs"])}
                           for t in c["top5_per_position"]] for c in cases]
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(paths, f)
for name, env, extra in [("arbor f32 (burn)", {}, ["f32"]),
                         ("native avx512", {}, []),
                         ("native avx2", {"ARBOR_NO_AVX512": "1"}, []),
                         ("native portable", {"ARBOR_NO_SIMD": "1"}, [])]:
    out = json.loads(subprocess.run([EXAMPLE, f.name] + extra, env={**os.environ, **env},
                                    capture_output=True, text=True, check=True).stdout)
    if not out["f32"] and name.split()[1] not in out["kernels"]:
        continue  # this CPU lacks the level
    impls[name] = [tops_from_rows(p) for p in out["top"]]

server = subprocess.Popen([PY, os.path.join(SHARED, "tools/serve_xllamacpp.py"), "--model", model,
                           "--port", str(PORT), "--parallel", "1", "--threads", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    while "READY" not in server.stdout.readline():
        pass
    # Each prefix read one new token at a time (the server keeps the rest cached), and each
    # prefix read whole in one batch: the same program, two summation paths.
    for name, cached in [("llama.cpp", True), ("llama.cpp whole", False)]:
        lc = []
        for p in paths:
            rows = []
            for n in range(1, len(p) + 1):
                body = {"prompt": p[:n], "n_predict": 1, "temperature": 0, "n_probs": 50,
                        "cache_prompt": cached, "post_sampling_probs": False}
                req = urllib.request.Request(f"http://127.0.0.1:{PORT}/completion",
                                             json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})
                r = json.load(urllib.request.urlopen(req))
                top = r["completion_probabilities"][0]["top_logprobs"]
                rows.append({t["id"]: t["logprob"] for t in top})
            lc.append(rows)
        impls[name] = lc
finally:
    server.terminate()
    server.wait()


def compare(a, b):
    diffs = []
    for pa, pb in zip(impls[a], impls[b]):
        for ra, rb in zip(pa, pb):
            for i, lp in sorted(ra.items(), key=lambda kv: -kv[1])[:5]:
                if i in rb:
                    diffs.append(abs(lp - rb[i]))
    return sum(diffs) / len(diffs), max(diffs), len(diffs)


names = list(impls)
print(f"{'A (its top-5 ids)':<20} {'B':<20} {'mean':>7} {'largest':>8} {'values':>7}")
for a in ["llama.cpp", "llama.cpp whole", "f32 reference"] + [n for n in names if n.startswith("native")]:
    for b in names:
        if a != b and not (a == "f32 reference" and b == "arbor f32 (burn)"):
            m, w, k = compare(a, b)
            print(f"{a:<20} {b:<20} {m:7.3f} {w:8.3f} {k:7d}")
