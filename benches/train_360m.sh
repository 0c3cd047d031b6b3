#!/usr/bin/env bash
# Memory and step time of a SmolLM2-360M-shaped Llama (random init, the embedded tokenizer)
# trained with DPO at batch 1 on one pair whose two sequences are ~510 tokens each (GSM8K test
# text: a 240-token prompt, 250-token responses), 3 steps; peak RSS from GNU time.
#   bash benches/train_360m.sh [dpo|oreo]      (uses target/release/arbor; ~2 minutes, ~12 GiB)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ALGO=${1:-dpo}
ARBOR="${CARGO_TARGET_DIR:-$ROOT/target}/release/arbor"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$ARBOR" model init --out "$WORK/m360" --shape smollm2-360m --tokenizer embedded > /dev/null
python3 - "$ROOT/../shared/data/gsm8k/test.jsonl" "$ALGO" > "$WORK/data.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][:40]
q = " ".join(r["question"] for r in rows)
a = " ".join(r["answer"] for r in rows)
if sys.argv[2] == "dpo":
    print(json.dumps({"id": "long", "prompt": [{"role": "user", "content": q[:954]}],
                      "chosen": [{"role": "assistant", "content": a[:479]}],
                      "rejected": [{"role": "assistant", "content": a[500:1028]}]}))
else:  # one OREO trajectory of about the same length, reward 1
    print(json.dumps({"prompt": q[:954], "steps": [a[:479]], "reward": 1.0}))
PY
/usr/bin/time -f "peak RSS %M KiB, wall %e s" "$ARBOR" train --algo "$ALGO" --data "$WORK/data.jsonl" \
  --model "$WORK/m360" --out "$WORK/out" --epochs 3 --batch-size 1 --quiet \
  | python3 -c 'import json, sys; d = json.loads(sys.stdin.readlines()[-1]); print("%d steps, %d response tokens, %.1f s" % (d["steps"], d["train_tokens"], d["seconds"]))'
cut -d, -f1,3 "$WORK/out/curves.csv"
