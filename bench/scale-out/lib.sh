# Helpers for the scale-out benchmarks (sourced, not run): printed commands, free ports, waiting for
# HTTP, cleanup of what the script started, and nodes on a fresh PostgreSQL database and S3 prefix.
#
# Needs the servers of `scripts/services.sh start` described in the environment (source its env file):
# CACHE_RESERVE_TEST_POSTGRES, CACHE_RESERVE_TEST_S3_ENDPOINT, CACHE_RESERVE_TEST_S3_BUCKET, AWS_*.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

for v in CACHE_RESERVE_TEST_POSTGRES CACHE_RESERVE_TEST_S3_ENDPOINT CACHE_RESERVE_TEST_S3_BUCKET AWS_ACCESS_KEY_ID; do
    if [[ -z ${!v:-} ]]; then
        echo "$v is not set: bash scripts/services.sh start, then source its env file" >&2
        exit 2
    fi
done

say() { printf '\n== %s\n' "$*"; }

# Prints a command, shell-quoted so it can be pasted, to stderr and to RESULTS_DIR/commands.txt.
show() {
    local line
    line=$(printf ' %q' "$@")
    echo "+$line" >&2
    [[ -z ${RESULTS_DIR:-} ]] || echo "${line# }" >>"$RESULTS_DIR/commands.txt"
}
run() {
    show "$@"
    "$@"
}

failed_checks=()
check_failed() {
    echo "CHECK FAILED: $*" >&2
    failed_checks+=("$*")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls URL until it answers 200 (extra curl arguments after PID), for up to 30 s.
wait_http() {
    local url=$1 pid=$2; shift 2
    for _ in $(seq 300); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$@" "$url") == 200 ]] && return 0
        kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before $url answered" >&2; return 1; }
        sleep 0.1
    done
    echo "$url did not answer 200 within 30 s" >&2
    return 1
}

# Every process started here is a background job of this shell; on exit the ones still running are
# ended by pid (never by name).
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in $(jobs -p); do stop_pid "$pid"; done
    if [[ -n ${scratch:-} ]]; then rm -rf "$scratch"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Percent of all CPU time in use over 0.5 s (sets busy_pct).
measure_busy() {
    local a b total=0 idle i
    read -ra a </proc/stat
    sleep 0.5
    read -ra b </proc/stat
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    busy_pct=$((total ? 100 * (total - idle) / total : 0))
}

# CPU ticks (user + system) used so far by PIDS and their children.
cpu_ticks() {
    local p q total=0 st
    for p in $(for q in "$@"; do echo "$q"; pgrep -P "$q"; done); do
        read -ra st <"/proc/$p/stat" 2>/dev/null || continue
        total=$((total + st[13] + st[14]))
    done
    echo "$total"
}

# Our binary: CACHE_RESERVE_BIN, else a release build made here.
binary() {
    if [[ -z ${CACHE_RESERVE_BIN:-} ]]; then
        (cd "$repo" && run cargo build --release)
        CACHE_RESERVE_BIN=$repo/target/release/cache-reserve
    fi
    BIN=$CACHE_RESERVE_BIN
    [[ -x $BIN ]] || { echo "no executable at CACHE_RESERVE_BIN=$BIN" >&2; exit 1; }
}

# A fresh PostgreSQL database and S3 prefix, both named NAME; exports the CACHE_RESERVE_* variables that
# point `cache-reserve` (admin commands and serve) at them.
fresh_stores() {
    local name=$1
    run psql -q "$CACHE_RESERVE_TEST_POSTGRES" -c "CREATE DATABASE $name"
    export CACHE_RESERVE_CONTROL_STORE=${CACHE_RESERVE_TEST_POSTGRES%/*}/$name
    export CACHE_RESERVE_OBJECT_STORE=s3://$CACHE_RESERVE_TEST_S3_BUCKET/$name
    export CACHE_RESERVE_S3_ENDPOINT=$CACHE_RESERVE_TEST_S3_ENDPOINT
    echo "control store $CACHE_RESERVE_CONTROL_STORE, object store $CACHE_RESERVE_OBJECT_STORE at $CACHE_RESERVE_S3_ENDPOINT"
}

# Starts `cache-reserve serve` named NAME on the exported stores, with further flags; sets node_pid,
# node_api (http://…/client/v4) and node_proxy (http://…).
start_node() {
    local name=$1; shift
    local api_port proxy_port
    api_port=$(free_port)
    proxy_port=$(free_port)
    local serve=("$BIN" serve --api-listen "127.0.0.1:$api_port" --proxy-listen "127.0.0.1:$proxy_port" "$@")
    show "${serve[@]}"
    "${serve[@]}" >"$RESULTS_DIR/$name.log" 2>&1 &
    node_pid=$!
    node_api=http://127.0.0.1:$api_port/client/v4
    node_proxy=http://127.0.0.1:$proxy_port
    wait_http "$node_api/openapi.json" "$node_pid" || { tail -20 "$RESULTS_DIR/$name.log" >&2; exit 1; }
}

# results.tsv: key, who, value; median() prints the median of KEY/WHO's values.
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS_DIR/results.tsv"; }
median() {
    awk -F'\t' -v k="$1" -v w="$2" '$1 == k && $2 == w { print $3 }' "$RESULTS_DIR/results.tsv" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
values() { awk -F'\t' -v k="$1" -v w="$2" '$1 == k && $2 == w { printf "%s%.0f", (n++ ? ", " : ""), $3 }' "$RESULTS_DIR/results.tsv"; }
