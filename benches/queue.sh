#!/usr/bin/env bash
# The work queue's cost and scaling: one synth job (mock server, no gate, one round) run locally
# (file journal, 64 items in flight) and on a PostgreSQL queue with 1, 2, 4 and 8 worker
# processes of 64 items in flight each, with the wall time of each and a check that the pairs
# are the same bytes every time.
#   bash benches/queue.sh [ARBOR_BINARY] [ITEMS] [MOCK_LATENCY_MS]   (defaults: release, 2000, 200)
# Starts its own PostgreSQL cluster (Debian's server) in a temporary directory on a loopback
# port, as nobody when run as root.
set -euo pipefail
A=${1:-target/release/arbor}; N=${2:-2000}; LAT=${3:-200}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
work=$(mktemp -d); chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; else "$@"; fi; }
mkdir "$work/pg"; echo bench-pw > "$work/pg/pw"
[ "$(id -u)" = 0 ] && chown -R 65534:65534 "$work/pg"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$bin/initdb" -D "$work/pg/data" -U arbor --auth=scram-sha-256 --pwfile "$work/pg/pw" --no-sync --no-instructions >/dev/null
as_pg "$bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=''" start >/dev/null
cleanup() { kill $(jobs -p) 2>/dev/null || true; as_pg "$bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export PGPASSWORD=bench-pw
Q="postgres://arbor@127.0.0.1:$port/postgres?sslmode=disable"
$A mock-server --port 0 --latency-ms "$LAT" > "$work/mock.txt" 2>/dev/null &
sleep 1
U=$(head -1 "$work/mock.txt"); U=${U%/}; U=${U%/v1}/v1
$A env sample --env math --n "$N" --seed 5 > "$work/items.jsonl"
common=(--input "$work/items.jsonl" --target-url "$U" --target-model t --judge-url "$U" --judge-model j --no-gate --rounds 1 --max-in-flight 64)
secs() { local t0; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $t0" | bc; }
echo "| run | in flight | seconds | items/s |"
echo "| --- | --- | --- | --- |"
row() { printf '| %s | %s | %.1f | %.1f |\n' "$1" "$2" "$3" "$(echo "$N / $3" | bc -l)"; }
row "local run (file journal), 1 process" 64 "$(secs $A synth "${common[@]}" --out "$work/local")"
for p in 1 2 4 8; do
  pids=()
  for _ in $(seq 2 "$p"); do $A worker --queue "$Q" --concurrency 64 >/dev/null 2>&1 & pids+=($!); done
  row "queue, $p worker processes" $((64 * p)) "$(secs $A synth "${common[@]}" --out "$work/q$p" --queue "$Q" --workers 64)"
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" && wait "${pids[@]}" 2>/dev/null || true
  cmp "$work/local/pairs.jsonl" "$work/q$p/pairs.jsonl" || { echo "pairs differ with $p processes"; exit 1; }
done
echo "pairs.jsonl identical in every run ($(wc -l < "$work/local/pairs.jsonl") pairs)"
