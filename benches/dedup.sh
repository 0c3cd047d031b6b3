#!/usr/bin/env bash
# Near-duplicate removal on 100,000 prompts: arbor's dedup (MinHash, 128 permutations, word
# 3-shingles, LSH bands for Jaccard 0.8, each proposal confirmed exactly) beside datasketch's
# MinHash + MinHashLSH (the library behind distilabel's MinHashDedup) on the same prompts and
# settings, same machine, same run.   bash benches/dedup.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="${ARBOR_HOME:-$HOME/.cache/arbor}/venv/bin/python"
"$PY" -c 'import datasketch' 2>/dev/null || "$PY" -m pip install -q datasketch
export DEDUP_PROMPTS=$(mktemp --suffix .jsonl)
cd "$ROOT" && cargo test -q --release -p arbor-synth --test dedup throughput -- --ignored --nocapture 2>&1 | grep '^arbor:'
"$PY" - "$DEDUP_PROMPTS" <<'PY'
import json, re, sys, time
from datasketch import MinHash, MinHashLSH
prompts = [json.loads(l)["prompt"] for l in open(sys.argv[1])]
t = time.time()
lsh = MinHashLSH(threshold=0.8, num_perm=128)
dups = 0
for i, p in enumerate(prompts):
    w = [x.lower() for x in re.split(r"\W+", p) if x]
    sh = {" ".join(w[k:k + 3]) for k in range(max(1, len(w) - 2))}
    m = MinHash(num_perm=128)
    m.update_batch([s.encode() for s in sh])
    if lsh.query(m):
        dups += 1
    else:
        lsh.insert(str(i), m)
secs = time.time() - t
print(f"datasketch: {len(prompts)} prompts in {secs:.2f}s ({len(prompts) / secs:.0f} prompts/s): {dups} duplicates at 0.8 (estimated Jaccard)")
PY
rm -f "$DEDUP_PROMPTS"
