#!/usr/bin/env bash
# Peak memory of the proxy under many concurrent distinct misses of large objects (issue #8, item 11).
#
#   bench/memory/misses.sh
#   CACHE_RESERVE_BIN=/tmp/cache-reserve-old bench/memory/misses.sh      # another build
#
# Starts `cache-reserve serve` (defaults: 256 MiB edge tier, so objects up to 16 MiB may enter it; the zone's
# reserve off, as a zone starts) in front of a Python origin serving distinct SIZE_MIB objects, then fires
# CLIENTS concurrent GETs of distinct objects, each a slow reader (bench/memory/load.py): it reads at
# RATE_MIB MiB/s until HOLD_MIB are left, waits until every client has got that far (so all misses are in
# flight at once), then reads the rest. HOLD_MIB is more than the kernel and hyper can buffer between the
# proxy and a client (tcp_wmem max 4 MiB here, the client's receive buffer 64 KiB), so no body has ended at
# that point. Prints the proxy's RSS at start, at the hold point, its peak (VmHWM) and the budget counters.
#
# Settings (environment), defaults in brackets:
#   CACHE_RESERVE_BIN  [target/release/cache-reserve, built with cargo build --release]
#   CLIENTS [200]  SIZE_MIB [15]  HOLD_MIB [6]  RATE_MIB [2]
#   SERVE_ARGS  [none]  extra flags for serve, e.g. "--edge-fill-buffer-bytes 32MiB"
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CLIENTS=${CLIENTS:-200}
SIZE_MIB=${SIZE_MIB:-15}
HOLD_MIB=${HOLD_MIB:-6}
RATE_MIB=${RATE_MIB:-2}
SERVE_ARGS=${SERVE_ARGS:-}
HOST=bench.example

if [[ -z ${CACHE_RESERVE_BIN:-} ]]; then
    (cd "$repo" && cargo build --release --quiet)
    CACHE_RESERVE_BIN=$repo/target/release/cache-reserve
fi

work=$(mktemp -d /tmp/cr-memory.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits (up to 30 s) until a file exists and is not empty.
wait_file() {
    for _ in $(seq 300); do [[ -s $1 ]] && return 0; sleep 0.1; done
    echo "timed out waiting for $1" >&2
    exit 1
}

python3 "$here/load.py" origin "$work/origin.port" $((SIZE_MIB << 20)) &
pids+=($!)
wait_file "$work/origin.port"
origin_port=$(cat "$work/origin.port")

"$CACHE_RESERVE_BIN" zone create "$HOST" --origin "http://127.0.0.1:$origin_port" --data-dir "$work/data" --create >/dev/null
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
RUST_LOG=info "$CACHE_RESERVE_BIN" serve --data-dir "$work/data" --api-listen 127.0.0.1:0 \
    --proxy-listen 127.0.0.1:0 $SERVE_ARGS >"$work/serve.log" 2>&1 &
server=$!
pids+=($server)
for _ in $(seq 300); do grep -q 'proxy on http://' "$work/serve.log" && break; sleep 0.1; done
proxy_port=$(grep -o 'proxy on http://[0-9.]*:[0-9]*' "$work/serve.log" | grep -o '[0-9]*$')
api=$(grep -o 'listening on http://[0-9.]*:[0-9]*' "$work/serve.log" | grep -o 'http://.*')
rss() { awk -v f="$1:" '$1 == f { print int($2 / 1024) }' "/proc/$server/status"; }
start_rss=$(rss VmRSS)

echo "serve $SERVE_ARGS: $CLIENTS clients x $SIZE_MIB MiB, reading at $RATE_MIB MiB/s until $HOLD_MIB MiB are left"
result=$(python3 "$here/load.py" clients "$proxy_port" "$HOST" "$CLIENTS" $((HOLD_MIB << 20)) \
    $((RATE_MIB << 20)) "$server")
echo "$result"
peak=$(rss VmHWM)
metrics=$(curl -s "$api/metrics")
series() { echo "$metrics" | awk -v s="$1" '$1 == s || index($1, s "{") == 1 { n += $2 } END { print n + 0 }'; }
at_hold=$(echo "$result" | python3 -c 'import json, sys; r = json.load(sys.stdin); print((r["rss_at_hold_kib"] or 0) // 1024)')
whole=$(echo "$result" | python3 -c 'import json, sys; print(json.load(sys.stdin)["whole"])')
echo
echo "| build | clients × size | whole bodies | RSS at start | RSS with all misses in flight | peak RSS (VmHWM) | edge fills skipped |"
echo "|---|---|---:|---:|---:|---:|---:|"
echo "| $("$CACHE_RESERVE_BIN" --version) $SERVE_ARGS | $CLIENTS × $SIZE_MIB MiB | $whole | $start_rss MiB | $at_hold MiB | $peak MiB | $(series cache_reserve_edge_fills_skipped_total) |"
[[ $whole == "$CLIENTS" ]] || { echo "some bodies came back short or wrong" >&2; exit 1; }
