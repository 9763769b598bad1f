#!/usr/bin/env bash
# API throughput with two nodes against one, on the same PostgreSQL database and S3 prefix, one machine:
# wrk on an authenticated read (GET /zones/{id}/cache/cache_reserve, bearer token) against node A alone,
# then against A and B at once (their sum), alternating which goes first.
#
#   bash bench/scale-out/api-two-nodes.sh
#
# Needs PostgreSQL and SeaweedFS described by the environment, as `scripts/services.sh` writes it.
# Both nodes run throughout; "1 node" loads only A (B idles, syncing its view). The two-node runs split the
# same load: the one-node run is wrk -tTHREADS -cCONNS, each of the two-node runs -t(THREADS/2) -c(CONNS/2).
# The CPU each part used during each run (the nodes, PostgreSQL, wrk) is read from /proc.
#
# Environment (defaults in brackets): CACHE_RESERVE_BIN [a release build made here], RESULTS_DIR [a new
# /tmp/scale-out-api.XXXXXX], ROUNDS [2], DURATION [10s], CONNS [64], THREADS [2], PG_PID [read from
# postmaster.pid under CACHE_RESERVE_SERVICES_DIR, default /tmp/bench-services].
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
services=${CACHE_RESERVE_SERVICES_DIR:-/tmp/bench-services}
PG_PID=${PG_PID:-$(head -1 "$services/postgres/data/postmaster.pid" 2>/dev/null || true)}

binary
scratch=$(mktemp -d -t scale-out-api-scratch.XXXXXX)
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d -t scale-out-api.XXXXXX)}
mkdir -p "$RESULTS_DIR"
: >"$RESULTS_DIR/results.tsv"
say "results $RESULTS_DIR"
echo "machine: $(nproc) cores, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(psql -tA "$CACHE_RESERVE_TEST_POSTGRES" -c 'SHOW server_version')"

name=api_$(date +%s)_$$
fresh_stores "$name"
zone_id=$(run "$BIN" zone create bench.test)
token=$("$BIN" token create --name bench --permission "Zone Settings Write")
show "$BIN" token create --name bench --permission "Zone Settings Write"
start_node node-a
a_pid=$node_pid a_api=$node_api
start_node node-b
b_pid=$node_pid b_api=$node_api
path=/zones/$zone_id/cache/cache_reserve
for api in "$a_api" "$b_api"; do
    got=$(curl -s -H "Authorization: Bearer $token" "$api$path")
    [[ $got == *'"success":true'* ]] || { echo "unexpected answer from $api: $got" >&2; exit 1; }
done
echo "both nodes answer GET $path"

# wrk OUT THREADS CONNS API: one run against one node (the token is not printed).
wrk_one() {
    local out=$1 threads=$2 conns=$3 api=$4
    show wrk -t"$threads" -c"$conns" -d"$DURATION" --timeout 5s -H 'Authorization: Bearer $token' "$api$path"
    wrk -t"$threads" -c"$conns" -d"$DURATION" --timeout 5s -H "Authorization: Bearer $token" "$api$path" >"$out"
}
rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
check_wrk() {
    if grep -qE '^  (Non-2xx|Socket errors)' "$1"; then
        check_failed "$(basename "$1"): $(grep -E '^  (Non-2xx|Socket errors)' "$1" | xargs)"
    fi
}

# CPU seconds used by each part during a run (ticks are 1/100 s): nodes, PostgreSQL (the postmaster
# and its backends), wrk; and the machine's busy share.
cpu_split() {
    local label=$1; shift
    local t0=("$@") t1 stat_a stat_b total=0 idle i
    read -ra stat_b </proc/stat
    t1=("$(cpu_ticks "$a_pid")" "$(cpu_ticks "$b_pid")" "$([[ -n $PG_PID ]] && cpu_ticks "$PG_PID" || echo 0)")
    read -ra stat_a <<<"$stat0"
    for i in 1 2 3 4 5 6 7 8; do total=$((total + stat_b[i] - stat_a[i])); done
    idle=$((stat_b[4] - stat_a[4] + stat_b[5] - stat_a[5]))
    printf '    CPU during %s: node A %.1f s, node B %.1f s, PostgreSQL %.1f s; machine %d%% busy (of %d cores)\n' \
        "$label" "$(echo "(${t1[0]} - ${t0[0]}) / 100" | bc -l)" "$(echo "(${t1[1]} - ${t0[1]}) / 100" | bc -l)" \
        "$(echo "(${t1[2]} - ${t0[2]}) / 100" | bc -l)" "$((total ? 100 * (total - idle) / total : 0))" "$(nproc)" |
        tee -a "$RESULTS_DIR/cpu.txt"
}
cpu_now() {
    stat0=$(head -1 /proc/stat)
    cpu0=("$(cpu_ticks "$a_pid")" "$(cpu_ticks "$b_pid")" "$([[ -n $PG_PID ]] && cpu_ticks "$PG_PID" || echo 0)")
}

one_node() {
    say "1 node (A), round $1"
    measure_busy
    ((busy_pct < 10)) || echo "WARNING: the machine was ${busy_pct}% busy before this run" >&2
    cpu_now
    wrk_one "$RESULTS_DIR/one-r$1.txt" "$THREADS" "$CONNS" "$a_api"
    cpu_split "1 node, round $1" "${cpu0[@]}"
    cat "$RESULTS_DIR/one-r$1.txt"
    check_wrk "$RESULTS_DIR/one-r$1.txt"
    record one total "$(rps "$RESULTS_DIR/one-r$1.txt")"
}
two_nodes() {
    say "2 nodes (A and B at once), round $1"
    measure_busy
    ((busy_pct < 10)) || echo "WARNING: the machine was ${busy_pct}% busy before this run" >&2
    cpu_now
    wrk_one "$RESULTS_DIR/two-a-r$1.txt" $((THREADS / 2 > 0 ? THREADS / 2 : 1)) $((CONNS / 2)) "$a_api" &
    local wa=$!
    wrk_one "$RESULTS_DIR/two-b-r$1.txt" $((THREADS / 2 > 0 ? THREADS / 2 : 1)) $((CONNS / 2)) "$b_api" &
    local wb=$!
    wait "$wa" "$wb"
    cpu_split "2 nodes, round $1" "${cpu0[@]}"
    cat "$RESULTS_DIR/two-a-r$1.txt" "$RESULTS_DIR/two-b-r$1.txt"
    check_wrk "$RESULTS_DIR/two-a-r$1.txt"
    check_wrk "$RESULTS_DIR/two-b-r$1.txt"
    local a b
    a=$(rps "$RESULTS_DIR/two-a-r$1.txt") b=$(rps "$RESULTS_DIR/two-b-r$1.txt")
    record two a "$a"
    record two b "$b"
    record two total "$(echo "$a + $b" | bc -l)"
}

# Warm-up: both nodes' connection pools and caches.
wrk -t1 -c8 -d2s -H "Authorization: Bearer $token" "$a_api$path" >/dev/null
wrk -t1 -c8 -d2s -H "Authorization: Bearer $token" "$b_api$path" >/dev/null
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then one_node "$r"; two_nodes "$r"; else two_nodes "$r"; one_node "$r"; fi
done

{
    echo
    echo "| API GET cache_reserve, req/s | per round | median |"
    echo "|---|---|---:|"
    printf '| 1 node (A; -t%d -c%d) | %s | %.0f |\n' "$THREADS" "$CONNS" "$(values one total)" "$(median one total)"
    printf '| 2 nodes, sum (A + B, each half the connections) | %s | %.0f |\n' "$(values two total)" "$(median two total)"
    printf '| 2 nodes / 1 node | | %.2f× |\n' "$(echo "$(median two total) / $(median one total)" | bc -l)"
    echo
    cat "$RESULTS_DIR/cpu.txt"
    ((${#failed_checks[@]} == 0)) || printf 'CHECK FAILED: %s\n' "${failed_checks[@]}"
} | tee "$RESULTS_DIR/summary.md"
((${#failed_checks[@]} == 0))
