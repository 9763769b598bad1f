#!/usr/bin/env bash
# Compares our proxy (`cache-reserve serve`) with nginx proxy_cache on loopback, with wrk.
#
#   bench/proxy/run.sh [edge|reserve|reserve4k|latency|memory|fill|all]...     (default: all)
#
# Scenarios, each measured against nginx and ours in the same run, alternating:
#   edge       requests/s for edge-tier hits: random over EDGE_OBJECTS objects of 1 KiB, then of 64 KiB
#   reserve    requests/s for reserve hits: random over RESERVE_OBJECTS x 64 KiB, ours with a 1 MiB edge
#   reserve4k  the same over RESERVE4K_OBJECTS x 4 KiB
#              Each throughput scenario also reports the CPU time the servers spent per request (their
#              processes' user + system time over the requests served), which a busy machine skews less.
#   latency    p50/p99 at a fixed RATE (req/s) over the 1 KiB edge set and over the reserve set
#   memory     peak RSS while MEM_OBJECTS x 1 MiB distinct objects stream through once (256 MiB edge)
#   fill       misses written to the reserve: FILL_RATE req/s for FILL_DURATION, each for an object never
#              asked for before (FILL_SIZE), ours with a 1 MiB edge; then ours' /metrics must show every
#              object written (none given up, none bypassing the reserve), and after a restart of ours
#              (an empty edge) every object must read back as a reserve hit. FILL_FIND_MAX=1 then steps
#              ours' rate up (FILL_FIND_RATES) until objects are left out or the rate falls 5 % short,
#              bisects between the last two rates, and reports the highest rate that held.
#
# Everything runs on 127.0.0.1 from a scratch dir (mktemp -d, removed on exit; TMPDIR picks where, the
# memory scenario writes MEM_OBJECTS MiB there). Results (raw wrk output, logs, results.tsv, the
# summary table) stay in RESULTS_DIR. The exact commands are printed as they run.
#
# Environment (defaults in brackets):
#   CACHE_RESERVE_BIN  our binary [target/release/cache-reserve, built here with cargo build --release]
#   PEER_ONLY=1        measure nginx only (no build, no ours)
#   RESULTS_DIR        where results go [a new /tmp/proxy-bench.XXXXXX]
#   DURATION [10s] CONNS [64] THREADS [2] ROUNDS [1]     throughput runs; ROUNDS>1 reports medians
#   EDGE_OBJECTS [1000] RESERVE_OBJECTS [20000] EDGE_BYTES [268435456] TINY_EDGE_BYTES [1048576]
#   RATE [2000] LAT_CONNS [16] LAT_DURATION [15s]        fixed-rate latency runs
#   MEM_OBJECTS [10240] MEM_EDGE_BYTES [268435456] MEM_PARALLEL [4]
#   RESERVE4K_OBJECTS [20000]
#   FILL_RATE [1500] FILL_DURATION [20s] FILL_SIZE [4k|64k] FILL_CONNS [64]
#   FILL_FIND_MAX [0] FILL_FIND_RATES [FILL_RATE/4 doubled 7 times: 375 750 1500 ... 48000]
#   FILL_FIND_BISECT [2]  steps between the last rate that held and the first that did not
#   SAMPLE [20]        objects curl'd after a fill to check the next fetch is a hit
#   SETTLE_TIMEOUT [120]  seconds to wait after a fill for the servers to go idle
#
# Exit status: 0, or 1 when a check failed (errors, misses during a hit run, wrong cache headers, a fill
# that left objects out of the reserve); the table is printed either way, with the failed checks under it.
# The steps of FILL_FIND_MAX are expected to fail at the top and do not count.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
EDGE_OBJECTS=${EDGE_OBJECTS:-1000}
RESERVE_OBJECTS=${RESERVE_OBJECTS:-20000}
EDGE_BYTES=${EDGE_BYTES:-268435456}
TINY_EDGE_BYTES=${TINY_EDGE_BYTES:-1048576}
RATE=${RATE:-2000}
LAT_CONNS=${LAT_CONNS:-16}
LAT_DURATION=${LAT_DURATION:-15s}
MEM_OBJECTS=${MEM_OBJECTS:-10240}
MEM_EDGE_BYTES=${MEM_EDGE_BYTES:-268435456}
MEM_PARALLEL=${MEM_PARALLEL:-4}
RESERVE4K_OBJECTS=${RESERVE4K_OBJECTS:-20000}
FILL_RATE=${FILL_RATE:-1500}
FILL_DURATION=${FILL_DURATION:-20s}
FILL_SIZE=${FILL_SIZE:-4k}
FILL_CONNS=${FILL_CONNS:-64}
FILL_FIND_MAX=${FILL_FIND_MAX:-0}
FILL_FIND_RATES=${FILL_FIND_RATES:-$(for i in 0 1 2 3 4 5 6 7; do printf '%d ' $(((FILL_RATE << i) / 4)); done)}
FILL_FIND_BISECT=${FILL_FIND_BISECT:-2}
SAMPLE=${SAMPLE:-20}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-120}
PEER_ONLY=${PEER_ONLY:-0}
ZONE=bench.test

# ---------------------------------------------------------------------------------------------------
# Which scenarios
# ---------------------------------------------------------------------------------------------------
want_edge=0 want_reserve=0 want_reserve4k=0 want_latency=0 want_memory=0 want_fill=0
for arg in "${@:-all}"; do
    case $arg in
        edge) want_edge=1 ;;
        reserve) want_reserve=1 ;;
        reserve4k) want_reserve4k=1 ;;
        latency) want_latency=1 ;;
        memory) want_memory=1 ;;
        fill) want_fill=1 ;;
        all) want_edge=1 want_reserve=1 want_reserve4k=1 want_latency=1 want_memory=1 want_fill=1 ;;
        *) echo "usage: $0 [edge|reserve|reserve4k|latency|memory|fill|all]..." >&2; exit 2 ;;
    esac
done
case $FILL_SIZE in
    4k | 64k) ;;
    *) echo "FILL_SIZE must be 4k or 64k" >&2; exit 2 ;;
esac
fill_secs=${FILL_DURATION%s}
[[ $fill_secs =~ ^[0-9]+$ ]] || { echo "FILL_DURATION must be whole seconds (20s)" >&2; exit 2; }

servers=(nginx ours)
[[ $PEER_ONLY == 1 ]] && servers=(nginx)

# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------
say() { printf '\n== %s\n' "$*"; }

# Prints a command, shell-quoted so it can be pasted, to stderr and to RESULTS_DIR/commands.txt.
show() {
    local line
    line=$(printf ' %q' "$@")
    echo "+$line" >&2
    [[ -z ${RESULTS_DIR:-} ]] || echo "${line# }" >>"$RESULTS_DIR/commands.txt"
}

# Prints a command and runs it.
run() {
    show "$@"
    "$@"
}

# Prints a command and runs it with its output to the file OUT, in the background and waited for, so
# that a signal to this script ends it at once (bash runs traps only between foreground commands).
run_to() {
    local out=$1; shift
    show "$@"
    "$@" >"$out" &
    wait $!
}

failed_checks=()
check_failed() {
    echo "CHECK FAILED: $*" >&2
    failed_checks+=("$*")
}

# Notes that do not fail the run (a busy machine), listed under the table.
warnings=()
warn() {
    echo "WARNING: $*" >&2
    warnings+=("$*")
}

# CPU ticks (user + system) used so far by PIDs and their children.
cpu_ticks() {
    local p q total=0 st
    for p in $(for q in "$@"; do echo "$q"; pgrep -P "$q"; done); do
        read -ra st <"/proc/$p/stat" 2>/dev/null || continue
        total=$((total + st[13] + st[14])) # utime, stime (no spaces in these processes' names)
    done
    echo "$total"
}

# Measures 0.5 s of the machine and sets busy_pct (percent of all CPU time in use) and own_pct (the
# share of it used by PIDs: our servers, which should be idle between runs).
measure_busy() {
    local a b own_a own_b total=0 idle i
    read -ra a </proc/stat; own_a=$(cpu_ticks "$@")
    sleep 0.5
    read -ra b </proc/stat; own_b=$(cpu_ticks "$@")
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    busy_pct=$((total ? 100 * (total - idle) / total : 0))
    own_pct=$((total ? 100 * (own_b - own_a) / total : 0))
}

# A free TCP port on 127.0.0.1 (the kernel picks it; it is released again right away).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls URL until it answers 200, for up to 30 s.
wait_http() {
    local url=$1 pid=$2
    for _ in $(seq 300); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]] && return 0
        kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before $url answered" >&2; return 1; }
        sleep 0.1
    done
    echo "$url did not answer 200 within 30 s" >&2
    return 1
}

# Every process this script starts is a background job of this shell; on exit, those still running
# (bash's job table: pids already waited for are not in it, so a reused pid is never hit) are ended.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in $(jobs -p); do stop_pid "$pid"; done
    if [[ -n ${scratch:-} ]]; then rm -rf "$scratch"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Fills an nginx config template: every @KEY@ given as KEY=VALUE.
render() {
    local template=$1 out=$2; shift 2
    local args=() kv
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$template" >"$out"
}

user_line() { [[ $EUID == 0 ]] && echo 'user root;' || true; }

# Starts nginx in the foreground as our child, with config CONF and everything under DIR.
start_nginx() {
    local conf=$1 dir=$2 logs=$3
    mkdir -p "$dir"/tmp
    show nginx -c "$conf" -p "$dir" -e "$logs" -g 'daemon off;'
    nginx -c "$conf" -p "$dir" -e "$logs" -g 'daemon off;' &
    nginx_pid=$!
}

# The /proc/N/status FIELDs (KiB: VmRSS, RssAnon, VmHWM, ...) of PID and its children (nginx: master,
# workers, cache manager/loader), each summed over the processes, on one line.
mem_tree_kib() {
    local pid=$1; shift
    local fields="$*" p
    for p in $pid $(pgrep -P "$pid" || true); do
        cat "/proc/$p/status" 2>/dev/null || true
    done | awk -v fields="$fields" '
        { sub(":", "", $1); sum[$1] += $2 }
        END { n = split(fields, f, " "); for (i = 1; i <= n; i++) printf "%d%s", sum[f[i]], (i < n ? " " : "\n") }'
}

# Samples PID's memory every 0.5 s into OUT as "seconds VmRSS RssAnon" (KiB) lines until PID exits or
# the sampler is stopped; sets sampler_pid.
start_rss_sampler() {
    local pid=$1 out=$2
    (
        start=$(date +%s.%N)
        while kill -0 "$pid" 2>/dev/null; do
            printf '%.1f %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$(mem_tree_kib "$pid" VmRSS RssAnon)"
            sleep 0.5
        done
    ) >"$out" &
    sampler_pid=$!
}

# Sets running to the pids of the servers running now.
server_pids() {
    running=()
    local p
    for p in "${origin_pid:-}" "${peer_pid:-}" "${ours_pid:-}"; do [[ -z $p ]] || running+=("$p"); done
}

# Before a measurement: flushes dirty pages (generated objects, cache fills), so that the kernel's
# writeback does not compete with it, then waits up to SETTLE_TIMEOUT s for the servers to go idle
# (our reserve may still be writing a fill behind the responses). Says how long that took.
settle() {
    run sync
    local start=$SECONDS
    server_pids
    ((${#running[@]})) || return 0
    while measure_busy "${running[@]}"; ((own_pct >= 3)); do
        if ((SECONDS - start >= SETTLE_TIMEOUT)); then
            warn "the servers were still ${own_pct}% busy ${SETTLE_TIMEOUT} s after the fill"
            break
        fi
    done
    echo "    servers idle $((SECONDS - start)) s after the fill"
}

# Requests that reached the origin so far (lines in its unbuffered access log).
origin_requests() { wc -l <"$scratch/origin/access.log"; }

# results.tsv holds one line per measurement: key, server, value. The table takes medians.
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS_DIR/results.tsv"; }

# Server order for round R: alternate who goes first.
order() {
    if [[ ${#servers[@]} == 1 ]]; then echo nginx
    elif (($1 % 2)); then echo nginx ours
    else echo ours nginx; fi
}

url_of() { [[ $1 == nginx ]] && echo "$peer_url" || echo "$ours_url"; }

# ---------------------------------------------------------------------------------------------------
# Tools, binary, scratch and results dirs
# ---------------------------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v bc >/dev/null || missing+=(bc)
command -v pgrep >/dev/null || missing+=(procps)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update -qq
    run apt-get install -y -qq "${missing[@]}"
fi

if [[ $PEER_ONLY != 1 ]]; then
    if [[ -z ${CACHE_RESERVE_BIN:-} ]]; then
        say "building cache-reserve"
        (cd "$repo" && run cargo build --release)
        CACHE_RESERVE_BIN=$repo/target/release/cache-reserve
    fi
    BIN=$CACHE_RESERVE_BIN
    [[ -x $BIN ]] || { echo "no executable at CACHE_RESERVE_BIN=$BIN" >&2; exit 1; }
fi

scratch=$(mktemp -d -t proxy-bench-scratch.XXXXXX)
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d -t proxy-bench.XXXXXX)}
mkdir -p "$RESULTS_DIR"
: >"$RESULTS_DIR/results.tsv"
say "scratch $scratch, results $RESULTS_DIR"
echo "machine: $(nproc) cores, $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"

# ---------------------------------------------------------------------------------------------------
# Origin: generated objects, served by a plain nginx
# ---------------------------------------------------------------------------------------------------
# Writes COUNT files DIR/0..COUNT-1 of SIZE bytes: distinct contents (each starts with its own name)
# over one random block, so a content-addressed store could not fold them into one.
generate() {
    run python3 - "$@" <<'EOF'
import os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root, exist_ok=True)
block = os.urandom(size)
for i in range(count):
    with open(f"{root}/{i}", "wb") as f:
        f.write((f"{root}/{i}\n".encode() + block)[:size])
EOF
}

s64k_count=0
((want_edge)) && s64k_count=$EDGE_OBJECTS
((want_reserve || want_latency)) && ((RESERVE_OBJECTS > s64k_count)) && s64k_count=$RESERVE_OBJECTS

say "origin"
www=$scratch/origin/www
mkdir -p "$www"
# What the servers are asked for to see that they are up: no object of any scenario.
probe=/probe
echo probe >"$www/probe"
((want_edge || want_latency)) && generate "$www/s1k" "$EDGE_OBJECTS" 1024
((s64k_count)) && generate "$www/s64k" "$s64k_count" 65536
((want_reserve4k)) && generate "$www/s4k" "$RESERVE4K_OBJECTS" 4096
((want_memory)) && generate "$www" 1 1048576 && mv "$www/0" "$www/big.bin"
settle

origin_port=$(free_port)
render "$here/origin.conf.in" "$scratch/origin/nginx.conf" USER="$(user_line)" DIR="$scratch/origin" \
    LOGS="$RESULTS_DIR" ROOT="$www" PORT="$origin_port"
: >"$scratch/origin/access.log"
start_nginx "$scratch/origin/nginx.conf" "$scratch/origin" "$RESULTS_DIR/origin-error.log"
origin_url=http://127.0.0.1:$origin_port
origin_pid=$nginx_pid
wait_http "$origin_url$probe" "$origin_pid"
curl -sI "$origin_url$probe" | tr -d '\r' | grep -iE '^(HTTP|content-length|cache-control)'

# ---------------------------------------------------------------------------------------------------
# The two proxies
# ---------------------------------------------------------------------------------------------------
# Starts a fresh nginx proxy_cache peer named NAME; sets peer_pid and peer_url.
start_peer() {
    local name=$1 dir=$scratch/$1
    local port; port=$(free_port)
    render "$here/peer.conf.in" "$dir.conf" USER="$(user_line)" DIR="$dir" LOGS="$RESULTS_DIR" NAME="$name" \
        PORT="$port" ORIGIN_PORT="$origin_port" CACHE_MAX="${PEER_CACHE_MAX:-64g}"
    start_nginx "$dir.conf" "$dir" "$RESULTS_DIR/$name-error.log"
    peer_pid=$nginx_pid
    peer_url=http://127.0.0.1:$port
    wait_http "$peer_url$probe" "$peer_pid"
}

# Starts a fresh `cache-reserve serve` named NAME with an edge of BYTES and the reserve on for the
# zone; sets ours_pid, ours_url and ours_api (the API and /metrics). Does nothing with PEER_ONLY=1.
start_ours() {
    [[ $PEER_ONLY == 1 ]] && return 0
    local name=$1 bytes=$2 data=$scratch/$1/data
    local api_port proxy_port zone_id token
    api_port=$(free_port)
    proxy_port=$(free_port)
    mkdir -p "$data"
    zone_id=$(run "$BIN" zone create "$ZONE" --origin "$origin_url" --data-dir "$data" --create)
    echo "zone $zone_id"
    token=$("$BIN" token create --name bench --permission "Zone Settings Write" --data-dir "$data")
    show "$BIN" token create --name bench --permission "Zone Settings Write" --data-dir "$data"
    ours_serve=("$BIN" serve --data-dir "$data" --api-listen "127.0.0.1:$api_port"
        --proxy-listen "127.0.0.1:$proxy_port" --edge-cache-bytes "$bytes")
    ours_log=$RESULTS_DIR/$name.log
    ours_url=http://127.0.0.1:$proxy_port
    ours_api=http://127.0.0.1:$api_port
    : >"$ours_log"
    launch_ours
    # The token is a secret: shown as $token.
    echo "+ CLOUDFLARE_BASE_URL=$ours_api/client/v4 CLOUDFLARE_API_TOKEN=\$token $BIN reserve on $zone_id" >&2
    CLOUDFLARE_BASE_URL=$ours_api/client/v4 CLOUDFLARE_API_TOKEN=$token \
        "$BIN" reserve on "$zone_id" >"$RESULTS_DIR/$name-reserve-on.json"
}

# Runs ours_serve (set by start_ours), its log appended to ours_log, and waits for its API.
launch_ours() {
    show "${ours_serve[@]}"
    "${ours_serve[@]}" >>"$ours_log" 2>&1 &
    ours_pid=$!
    wait_http "$ours_api/client/v4/openapi.json" "$ours_pid" || { tail -20 "$ours_log" >&2; exit 1; }
}

# Stops ours and starts it again on the same data and ports: its edge tier (memory) is empty then,
# and what it serves from cache comes from the reserve.
restart_ours() {
    stop_pid "$ours_pid"
    launch_ours
}

# Sets metric to the sum of METRIC's samples (every label set) in ours' /metrics now; 0 when it has
# none yet (a zone's counters appear with its first request).
ours_metric() {
    local page
    metric=0
    page=$(curl -sf "$ours_api/metrics") || { check_failed "$ours_api/metrics did not answer"; return 0; }
    metric=$(awk -v m="$1" '$1 == m || index($1, m "{") == 1 { sum += $2 } END { printf "%d\n", sum }' <<<"$page")
}

stop_servers() {
    stop_pid "$peer_pid"
    [[ $PEER_ONLY == 1 ]] || stop_pid "$ours_pid"
    peer_pid='' ours_pid=''
}

# ---------------------------------------------------------------------------------------------------
# Fills and checks (curl)
# ---------------------------------------------------------------------------------------------------
# What one response said: status, then nginx's X-Cache-Status or our cf-cache-status, x-cache-reserve.
status_format='%{http_code}|%header{x-cache-status}%header{cf-cache-status}|%header{x-cache-reserve}\n'

# Fetches PREFIX0 .. PREFIX(COUNT-1) once each from SERVER, PARALLEL at a time (one curl, a URL glob,
# kept-alive connections). Prints how the answers were tallied and how long it took, and saves that
# as RESULTS_DIR/NAME.txt; every answer must be a 200. The answers are left in $scratch/walk.out.
walk() {
    local name=$1 server=$2 prefix=$3 count=$4 parallel=${5:-4}
    walk_globs "$name" "$server" "$parallel" "$count" "${prefix}[0-$((count - 1))]"
}

# walk over the paths of curl URL GLOBs (/s4k/[10-99:3]), which name COUNT objects in all.
walk_globs() {
    local name=$1 server=$2 parallel=$3 count=$4 url start ok glob urls=()
    shift 4
    url=$(url_of "$server")
    for glob in "$@"; do urls+=(-o /dev/null "$url$glob"); done # an -o for each URL argument
    start=$(date +%s.%N)
    run_to "$scratch/walk.out" curl -s --no-progress-meter -Z --parallel-max "$parallel" -H "Host: $ZONE" \
        -w "$status_format" "${urls[@]}" || true
    {
        sort "$scratch/walk.out" | uniq -c
        printf '%d objects in %.1f s\n' "$count" "$(echo "$(date +%s.%N) - $start" | bc)"
    } | sed 's/^ */    /' | tee "$RESULTS_DIR/$name.txt"
    ok=$(grep -c '^200|' "$scratch/walk.out" || true)
    ((ok == count)) || check_failed "$name: $((count - ok)) of $count fetches were not answered 200"
}

# Checks that SAMPLE random objects of the set are hits on SERVER now: X-Cache-Status HIT for nginx,
# cf-cache-status HIT for ours, and with WANT_RESERVE=HIT also x-cache-reserve HIT. Our reserve may be
# written behind the response, so the check is retried for up to 10 s, each time on objects not yet
# asked for (a reserve hit puts the object in the edge, and the next read of it says EDGE).
check_hits() {
    local server=$1 prefix=$2 count=$3 want_reserve=${4:-} url args i line bad
    url=$(url_of "$server")
    local samples attempts=0
    mapfile -t samples < <(shuf -i "0-$((count - 1))" -n "$((SAMPLE * 20))")
    while ((attempts * SAMPLE < ${#samples[@]})); do
        args=()
        for i in "${samples[@]:attempts * SAMPLE:SAMPLE}"; do args+=(-o /dev/null "$url$prefix$i"); done
        attempts=$((attempts + 1))
        bad=0
        while read -r line; do
            IFS='|' read -r code cache reserve <<<"$line"
            if [[ $code != 200 || $cache != HIT ]] || [[ -n $want_reserve && $reserve != "$want_reserve" ]]; then
                bad=$((bad + 1))
            fi
        done < <(curl -s -H "Host: $ZONE" -w "$status_format" "${args[@]}" | tee "$scratch/check.out")
        ((bad == 0)) && break
        sleep 0.5
    done
    echo "    $server, $SAMPLE random ${prefix}N (status|cache status|x-cache-reserve), attempt $attempts:"
    sort "$scratch/check.out" | uniq -c | sed 's/^/      /'
    ((bad == 0)) || check_failed "$server: $bad of $SAMPLE sampled $prefix objects were not ${want_reserve:+reserve }hits"
}

# ---------------------------------------------------------------------------------------------------
# Measurements (wrk)
# ---------------------------------------------------------------------------------------------------
# Runs wrk with ARGS, saving its output as RESULTS_DIR/NAME.txt, and checks the run for errors and for
# requests that reached the origin (these scenarios measure hits). Sets wrk_out.
run_wrk() {
    wrk_measure "$@"
    ((wrk_origin == 0)) || check_failed "$1: $wrk_origin requests reached the origin (not all hits)"
    [[ -z $wrk_errors ]] || check_failed "$1: $wrk_errors"
}

# Runs wrk as run_wrk does, without the checks: sets wrk_out, wrk_origin (the requests that reached the
# origin during the run) and wrk_errors (wrk's error lines, or nothing).
wrk_measure() {
    local name=$1; shift
    local before after
    wrk_out=$RESULTS_DIR/$name.txt
    # The servers should be idle now. CPU in use by something else (a build?), or by a server still
    # working in the background (writing its fill, say), will skew this run.
    server_pids
    measure_busy "${running[@]}"
    if ((busy_pct >= 10)); then
        warn "$name: the machine was ${busy_pct}% busy before the run (${own_pct}% by the servers); its figures are noisy"
    fi
    before=$(origin_requests)
    run_to "$wrk_out" wrk "$@"
    cat "$wrk_out"
    after=$(origin_requests)
    wrk_origin=$((after - before))
    wrk_errors=$(grep -E '^  (Non-2xx|Socket errors)' "$wrk_out" | xargs || true)
}

# Requests/s over random objects PREFIXn (n < COUNT), each server in turn, ROUNDS times; and the CPU time
# the server's processes spent per request (KEY-cpu, µs), which a busy machine skews far less than the
# rate: a rate is shared CPU, this is work done.
throughput() {
    local key=$1 prefix=$2 count=$3 r server pid ticks requests
    for ((r = 1; r <= ROUNDS; r++)); do
        for server in $(order "$r"); do
            say "$key: $server (round $r)"
            pid=$([[ $server == nginx ]] && echo "$peer_pid" || echo "$ours_pid")
            ticks=$(cpu_ticks "$pid")
            run_wrk "$key-$server-r$r" -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s --latency \
                -H "Host: $ZONE" -s "$here/random.lua" "$(url_of "$server")" -- "$prefix" "$count"
            ticks=$(($(cpu_ticks "$pid") - ticks))
            record "$key" "$server" "$(awk '/^Requests\/sec:/ { print $2 }' "$wrk_out")"
            requests=$(awk '/ requests in / { print $1 }' "$wrk_out")
            ((requests > 0)) && record "$key-cpu" "$server" "$(echo "$ticks * 1000000 / $(getconf CLK_TCK) / $requests" | bc -l)"
        done
    done
}

# Latency percentiles at a fixed RATE over random objects PREFIXn, each server in turn.
latency() {
    local key=$1 prefix=$2 count=$3 r server rate_per_thread
    rate_per_thread=$(echo "scale=3; $RATE / $THREADS" | bc)
    for ((r = 1; r <= ROUNDS; r++)); do
        for server in $(order "$r"); do
            say "$key: $server at $RATE req/s (round $r)"
            run_wrk "$key-$server-r$r" -t"$THREADS" -c"$LAT_CONNS" -d"$LAT_DURATION" --timeout 5s --latency \
                -H "Host: $ZONE" -s "$here/paced.lua" "$(url_of "$server")" -- "$prefix" "$count" "$rate_per_thread"
            local line; line=$(grep '^latency_us' "$wrk_out")
            record "$key-p50" "$server" "$(sed -E 's/.*p50=([0-9]+).*/\1/' <<<"$line")"
            record "$key-p99" "$server" "$(sed -E 's/.*p99=([0-9]+).*/\1/' <<<"$line")"
            local achieved; achieved=$(sed -E 's/.* = ([0-9.]+) req\/s.*/\1/' <<<"$(grep '^paced:' "$wrk_out")")
            record "$key-rate" "$server" "$achieved"
            if (($(echo "$achieved < 0.95 * $RATE" | bc))); then
                check_failed "$key $server: achieved $achieved req/s of $RATE (latency above $LAT_CONNS/$RATE s per request)"
            fi
        done
    done
}

# ---------------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------------
# Edge stage: both caches hold the 1 KiB (and 64 KiB) sets in their fast tier.
if ((want_edge || want_latency)); then
    say "edge stage: nginx peer and ours with --edge-cache-bytes $EDGE_BYTES"
    start_peer peer-edge
    start_ours ours-edge "$EDGE_BYTES"
    sets=(/s1k/)
    ((want_edge)) && sets+=(/s64k/)
    for objset in "${sets[@]}"; do
        for server in "${servers[@]}"; do
            say "warm $server with $EDGE_OBJECTS x $objset"
            walk "warm-${objset//\//}-$server" "$server" "$objset" "$EDGE_OBJECTS"
        done
    done
    settle
    for objset in "${sets[@]}"; do
        for server in "${servers[@]}"; do check_hits "$server" "$objset" "$EDGE_OBJECTS"; done
    done
    if ((want_edge)); then
        throughput edge-1k /s1k/ "$EDGE_OBJECTS"
        throughput edge-64k /s64k/ "$EDGE_OBJECTS"
    fi
    ((want_latency)) && latency latency-1k /s1k/ "$EDGE_OBJECTS"
    stop_servers
fi

# Reserve stage: a set far larger than our edge, so ours serves it from the disk reserve; nginx from
# its on-disk proxy_cache. (Both read through the page cache: this machine's RAM holds the set.)
# NAME names the servers and files; the set is PREFIXn, n < COUNT; req/s are recorded as KEY when
# THROUGHPUT is 1, and the latency scenario runs over the set when LATENCY is 1.
reserve_stage() {
    local name=$1 prefix=$2 count=$3 key=$4 do_throughput=$5 do_latency=$6 server pass misses want
    say "$name stage: nginx peer and ours with --edge-cache-bytes $TINY_EDGE_BYTES"
    start_peer "peer-$name"
    start_ours "ours-$name" "$TINY_EDGE_BYTES"
    for server in "${servers[@]}"; do
        say "fill $server with $count x $prefix"
        walk "fill-$name-$server" "$server" "$prefix" "$count"
    done
    settle
    # Ours skips the reserve for objects that arrive faster than the disk takes them (its write buffer
    # is bounded): walk again, up to three times, until no answer was a miss.
    if [[ " ${servers[*]} " == *" ours "* ]]; then
        for pass in 2 3 4; do
            say "ours: fill pass $pass (objects the last pass could not store are misses now)"
            walk "fill-$name-ours-pass$pass" ours "$prefix" "$count"
            settle
            misses=$(grep -c '|MISS|' "$scratch/walk.out" || true)
            ((misses == 0)) && break
        done
    fi
    for server in "${servers[@]}"; do
        [[ $server == ours ]] && want=HIT || want=
        check_hits "$server" "$prefix" "$count" "$want"
    done
    ((do_throughput)) && throughput "$key" "$prefix" "$count"
    ((do_latency)) && latency latency-reserve "$prefix" "$count"
    stop_servers
}
if ((want_reserve || want_latency)); then
    reserve_stage reserve /s64k/ "$RESERVE_OBJECTS" reserve-64k "$want_reserve" "$want_latency"
fi
((want_reserve4k)) && reserve_stage reserve4k /s4k/ "$RESERVE4K_OBJECTS" reserve-4k 1 0

# Fill stage: misses at a fixed rate, each for an object never asked for before, so that every request
# is a fill; ours with a 1 MiB edge, so that reading them back afterwards comes from the reserve.
fill_prefix=/fill$FILL_SIZE/
fill_next=0 # the first n of the next fill run: no run asks for an object an earlier one did

# Ours' counters a fill run reads, as cache_reserve_NAME_total: reserve writes given up; objects written
# (Class A operations); requests that bypassed the reserve though it is on (x-cache-reserve: UNAVAILABLE:
# the node's view of the zones expired, or the storage failed), whose objects are not written either;
# edge fills skipped.
fill_counters=(writes_abandoned class_a_operations reserve_unavailable edge_fills_skipped)

# Sets counters to the values of fill_counters in ours' /metrics now.
read_fill_counters() {
    local m
    counters=()
    for m in "${fill_counters[@]}"; do
        ours_metric "cache_reserve_${m}_total"
        counters+=("$metric")
    done
}

# One fill run of FILL_DURATION at RATE req/s from SERVER, saved as RESULTS_DIR/NAME.txt, then waits for
# the servers to go idle (ours: until no reserve write is in flight). Sets what wrk_measure sets;
# fill_achieved (req/s over the part of the run that sent requests), fill_p50 and fill_p99 (µs),
# fill_count and fill_globs (the objects asked for, for walk_globs); for ours what fill_counters gained
# over the run and the settling after it: fill_abandoned, fill_stored, fill_unavailable, fill_skipped.
# Checks nothing: the callers judge.
fill_run() {
    local name=$1 server=$2 rate=$3 line first='' threads counts t c max=0 start before=()
    fill_abandoned=0 fill_stored=0 fill_unavailable=0 fill_skipped=0 fill_count=0 fill_globs=()
    if [[ $server == ours ]]; then
        read_fill_counters
        before=("${counters[@]}")
    fi
    # distinct.lua stops sending after FILL_DURATION; the 5 s more (wrk's timeout) let the last requests
    # finish, or count as timeouts.
    wrk_measure "$name" -t"$THREADS" -c"$FILL_CONNS" -d"$((fill_secs + 5))s" --timeout 5s --latency \
        -H "Host: $ZONE" -s "$here/distinct.lua" "$(url_of "$server")" -- \
        "$fill_prefix" "$fill_next" "$(echo "scale=3; $rate / $THREADS" | bc)" "$THREADS" "$((fill_secs * 1000))"
    settle
    if [[ $server == ours ]]; then
        # A writer waiting on the disk uses no CPU: settle can return before the writes are done.
        start=$SECONDS
        while ours_metric cache_reserve_write_buffer_bytes; ((metric > 0)); do
            if ((SECONDS - start >= SETTLE_TIMEOUT)); then
                warn "$name: ours still held $metric bytes of reserve writes $SETTLE_TIMEOUT s after the run"
                break
            fi
            sleep 0.2
        done
        read_fill_counters
        fill_abandoned=$((counters[0] - before[0]))
        fill_stored=$((counters[1] - before[1]))
        fill_unavailable=$((counters[2] - before[2]))
        fill_skipped=$((counters[3] - before[3]))
    fi
    line=$(grep '^latency_us' "$wrk_out" || true)
    fill_p50=$(sed -E 's/.*p50=([0-9]+).*/\1/' <<<"$line")
    fill_p99=$(sed -E 's/.*p99=([0-9]+).*/\1/' <<<"$line")
    fill_achieved=$(sed -nE 's/^active: .* = ([0-9.]+) req\/s$/\1/p' "$wrk_out")
    read -r first threads counts < <(sed -nE 's/^distinct: first=([0-9]+) threads=([0-9]+) counts=(.*)/\1 \2 \3/p' "$wrk_out") || true
    if [[ -z $first ]]; then
        fill_achieved=0
        check_failed "$name: wrk did not finish (no distinct: line in $wrk_out)"
        return 0
    fi
    IFS=, read -ra counts <<<"$counts"
    # Thread t (from 0) asked for first + t + threads * k, k < its count: one curl glob with a step.
    for ((t = 0; t < threads; t++)); do
        c=${counts[t]}
        ((c > max)) && max=$c
        ((c)) || continue
        fill_count=$((fill_count + c))
        fill_globs+=("${fill_prefix}[$((first + t))-$((first + t + threads * (c - 1))):$threads]")
    done
    fill_next=$((first + threads * max))
    echo "    $fill_count objects asked for, $wrk_origin origin requests; achieved $fill_achieved req/s," \
        "p50 $fill_p50 µs, p99 $fill_p99 µs"
    [[ $server != ours ]] || echo "    ours: $fill_stored written to the reserve, $fill_abandoned writes given up," \
        "$fill_unavailable reserve bypassed (UNAVAILABLE), $fill_skipped edge fills skipped"
}

# Ours' warnings and errors in its log so far, each message once with how often, the commonest first.
ours_log_summary() {
    grep -E ' (WARN|ERROR) ' "$ours_log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -5 |
        sed 's/^/      /' || true
}

# One step of FILL_FIND_MAX: a fill run of ours at RATE, a row of RESULTS_DIR/fill-find-max.tsv. Sets
# fill_why to why the rate did not hold, or to nothing.
fill_step() {
    local rate=$1
    say "fill, highest rate: ours at $rate req/s"
    fill_run "fill-max-$rate" ours "$rate"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$fill_achieved" "$fill_p50" "$fill_p99" \
        "$fill_count" "$fill_stored" "$fill_abandoned" "$fill_unavailable" "$fill_skipped" "${wrk_errors:--}" \
        >>"$RESULTS_DIR/fill-find-max.tsv"
    fill_why=''
    if ((fill_abandoned)); then
        fill_why="$fill_abandoned of $fill_count reserve writes were given up"
    elif ((fill_unavailable)); then
        fill_why="$fill_unavailable of $fill_count requests bypassed the reserve (UNAVAILABLE)"
    elif ((fill_stored < fill_count)); then
        fill_why="only $fill_stored of $fill_count objects were written to the reserve"
    elif (($(echo "$fill_achieved < 0.95 * $rate" | bc))); then
        fill_why="only $fill_achieved req/s were achieved"
    elif [[ -n $wrk_errors ]]; then
        fill_why="wrk saw errors: $wrk_errors"
    fi
}

if ((want_fill)); then
    say "fill stage: new $FILL_SIZE objects at $FILL_RATE req/s for $fill_secs s; nginx peer and ours with --edge-cache-bytes $TINY_EDGE_BYTES"
    start_peer peer-fill
    start_ours ours-fill "$TINY_EDGE_BYTES"
    settle
    for ((r = 1; r <= ROUNDS; r++)); do
        for server in $(order "$r"); do
            say "fill: $server, $FILL_RATE req/s, each a new $fill_prefix object (round $r)"
            fill_run "fill-$server-r$r" "$server" "$FILL_RATE"
            ((fill_count)) || continue
            [[ -z $wrk_errors ]] || check_failed "fill-$server-r$r: $wrk_errors"
            ((wrk_origin == fill_count)) ||
                check_failed "fill-$server-r$r: $wrk_origin origin requests for $fill_count objects asked for once each"
            record fill-rate "$server" "$fill_achieved"
            record fill-p50 "$server" "$fill_p50"
            record fill-p99 "$server" "$fill_p99"
            if (($(echo "$fill_achieved < 0.95 * $FILL_RATE" | bc))); then
                check_failed "fill-$server-r$r: achieved $fill_achieved req/s of $FILL_RATE"
            fi
            if [[ $server == ours ]]; then
                record fill-abandoned ours "$fill_abandoned"
                record fill-skipped ours "$fill_skipped"
                record fill-unavailable ours "$fill_unavailable"
                ((fill_stored >= fill_count)) ||
                    check_failed "fill-ours-r$r: $fill_stored of $fill_count objects written to the reserve (Class A operations)"
                ((fill_unavailable == 0)) ||
                    check_failed "fill-ours-r$r: $fill_unavailable of $fill_count requests bypassed the reserve (reserve_unavailable_total)"
                ((fill_abandoned == 0)) ||
                    check_failed "fill-ours-r$r: $fill_abandoned of $fill_count reserve writes given up (writes_abandoned_total)"
                if ((fill_stored < fill_count)); then
                    echo "    ours' warnings so far:"
                    ours_log_summary
                fi
                # The last objects filled may still be in the edge (an edge hit says nothing of the
                # reserve): a restart empties it.
                say "ours: restart, so that every hit comes from the reserve"
                restart_ours
            fi
            # Read every object back: each must come from the reserve (ours) or the cache (nginx).
            say "fill: $server reads the $fill_count objects back"
            walk_globs "fill-$server-r$r-readback" "$server" 4 "$fill_count" "${fill_globs[@]}"
            [[ $server == ours ]] && hit='^200|HIT|HIT$' || hit='^200|HIT|$'
            hits=$(grep -c "$hit" "$scratch/walk.out" || true)
            record fill-hit-pct "$server" "$(echo "scale=4; 100 * $hits / $fill_count" | bc)"
            echo "    $hits of $fill_count read back were $([[ $server == ours ]] && echo "reserve hits" || echo hits)"
            ((hits == fill_count)) || check_failed "fill-$server-r$r: $((fill_count - hits)) of $fill_count objects filled" \
                "were not $([[ $server == ours ]] && echo "reserve hits (x-cache-reserve: HIT)" || echo hits) when read back"
        done
    done

    # The highest rate ours fills at and still writes every object, without falling 5 % short or wrk
    # errors: the rates of FILL_FIND_RATES in turn, on the same server, until one fails; then
    # FILL_FIND_BISECT steps between the last rate that held and the first that did not.
    if ((FILL_FIND_MAX)) && [[ $PEER_ONLY != 1 ]]; then
        printf 'rate\tachieved\tp50_us\tp99_us\tobjects\twritten\tabandoned\tunavailable\tskipped\terrors\n' \
            >"$RESULTS_DIR/fill-find-max.tsv"
        fill_held=0 fill_failed=0 fill_failed_why=''
        for rate in $FILL_FIND_RATES; do
            fill_step "$rate"
            if [[ -n $fill_why ]]; then fill_failed=$rate fill_failed_why=$fill_why; break; fi
            fill_held=$rate
        done
        for ((k = 0; k < FILL_FIND_BISECT && fill_failed > 0; k++)); do
            rate=$(((fill_held + fill_failed) / 2))
            fill_step "$rate"
            if [[ -n $fill_why ]]; then fill_failed=$rate fill_failed_why=$fill_why; else fill_held=$rate; fi
        done
        record fill-max-rate ours "$fill_held"
        fill_stop="highest fill rate that held: $fill_held req/s"
        if ((fill_failed)); then
            fill_stop+=" (at $fill_failed req/s $fill_failed_why"
        else
            fill_stop+=" (every rate of FILL_FIND_RATES held"
        fi
        fill_stop+="; steps in $RESULTS_DIR/fill-find-max.tsv)"
        echo "    $fill_stop"
        column -t -s $'\t' "$RESULTS_DIR/fill-find-max.tsv" | sed 's/^/    /'
        echo "    ours' warnings so far:"
        ours_log_summary
    elif ((FILL_FIND_MAX)); then
        warn "FILL_FIND_MAX measures ours, and PEER_ONLY=1 leaves it out"
    fi
    stop_servers
fi

# Memory stage: MEM_OBJECTS distinct 1 MiB objects pass through once; RSS sampled every 0.5 s until
# the server is idle again.
# nginx goes first and its cache is deleted before ours runs, so the disk holds one copy at a time.
if ((want_memory)); then
    need=$(((MEM_OBJECTS + 2048) * 1048576))
    avail=$(df --output=avail -B1 "$scratch" | tail -1)
    say "memory stage: $MEM_OBJECTS x 1 MiB; $((avail >> 30)) GiB free in $scratch, need $((need >> 30)) GiB"
    if ((avail < need)); then
        check_failed "memory: not enough disk for MEM_OBJECTS=$MEM_OBJECTS (set a smaller MEM_OBJECTS or TMPDIR)"
    else
        for server in "${servers[@]}"; do
            if [[ $server == nginx ]]; then
                start_peer peer-memory
                pid=$peer_pid
            else
                start_ours ours-memory "$MEM_EDGE_BYTES"
                pid=$ours_pid
            fi
            say "memory: $server streams $MEM_OBJECTS x /big/ ($MEM_PARALLEL in parallel)"
            start_rss_sampler "$pid" "$RESULTS_DIR/memory-$server-rss.txt"
            walk "memory-$server-walk" "$server" /big/ "$MEM_OBJECTS" "$MEM_PARALLEL"
            settle # keep sampling while the server finishes writing in the background
            peak_kib=$(awk '$2 > max { max = $2 } END { print max + 0 }' "$RESULTS_DIR/memory-$server-rss.txt")
            anon_kib=$(awk '$3 > max { max = $3 } END { print max + 0 }' "$RESULTS_DIR/memory-$server-rss.txt")
            hwm_kib=$(mem_tree_kib "$pid" VmHWM)
            stop_pid "$sampler_pid"
            stop_pid "$pid"
            peer_pid='' ours_pid=''
            echo "    peak sampled RSS $((peak_kib / 1024)) MiB (anonymous $((anon_kib / 1024)) MiB); VmHWM $((hwm_kib / 1024)) MiB"
            record memory-peak "$server" "$(echo "scale=1; $peak_kib / 1024" | bc)"
            record memory-anon "$server" "$(echo "scale=1; $anon_kib / 1024" | bc)"
            record memory-hwm "$server" "$(echo "scale=1; $hwm_kib / 1024" | bc)"
            [[ $server == nginx ]] || record memory-over-budget ours "$(echo "scale=1; ($peak_kib * 1024 - $MEM_EDGE_BYTES) / 1048576" | bc)"
            run rm -rf "$scratch/$([[ $server == nginx ]] && echo peer-memory || echo ours-memory)"
        done
    fi
fi

# ---------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------
# Median of KEY's values for SERVER, or nothing.
median() {
    awk -F'\t' -v k="$1" -v s="$2" '$1 == k && $2 == s { print $3 }' "$RESULTS_DIR/results.tsv" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) printf "%.6f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# One table row: LABEL, then KEY's medians rounded (printf FORMAT, %.0f), and their ratio. Nothing when
# KEY was not measured.
row() {
    local label=$1 key=$2 format=${3:-%.0f} n o ratio=
    n=$(median "$key" nginx)
    o=$(median "$key" ours)
    [[ -z $n && -z $o ]] && return 0
    [[ -n $n && -n $o ]] && [[ $n != 0.000000 ]] && ratio=$(echo "$o / $n" | bc -l | xargs printf '%.2f')
    # shellcheck disable=SC2059 # the format is the caller's
    printf '| %s | %s | %s | %s |\n' "$label" "${n:+$(printf "$format" "$n")}" "${o:+$(printf "$format" "$o")}" "${ratio:-–}"
}

{
    echo
    echo "### Proxy benchmark: nginx proxy_cache vs cache-reserve ($(date -u +%F), $(nproc) cores, loopback)"
    echo
    echo "| scenario | nginx | ours | ours/nginx |"
    echo "| --- | ---: | ---: | ---: |"
    row "edge hits, 1 KiB × $EDGE_OBJECTS, req/s (-c$CONNS)" edge-1k
    row "edge hits, 64 KiB × $EDGE_OBJECTS, req/s (-c$CONNS)" edge-64k
    row "reserve hits, 64 KiB × $RESERVE_OBJECTS, req/s (-c$CONNS)" reserve-64k
    row "reserve hits, 4 KiB × $RESERVE4K_OBJECTS, req/s (-c$CONNS)" reserve-4k
    row "edge hits, 1 KiB: server CPU µs per request" edge-1k-cpu %.1f
    row "edge hits, 64 KiB: server CPU µs per request" edge-64k-cpu %.1f
    row "reserve hits, 64 KiB: server CPU µs per request" reserve-64k-cpu %.1f
    row "reserve hits, 4 KiB: server CPU µs per request" reserve-4k-cpu %.1f
    row "1 KiB edge hits at $RATE req/s: p50 µs" latency-1k-p50
    row "1 KiB edge hits at $RATE req/s: p99 µs" latency-1k-p99
    row "1 KiB edge hits: achieved req/s" latency-1k-rate
    row "reserve hits at $RATE req/s: p50 µs" latency-reserve-p50
    row "reserve hits at $RATE req/s: p99 µs" latency-reserve-p99
    row "reserve hits: achieved req/s" latency-reserve-rate
    row "stream $MEM_OBJECTS × 1 MiB: peak RSS MiB (nginx: all processes)" memory-peak
    row "stream $MEM_OBJECTS × 1 MiB: peak RssAnon MiB (heap, not file pages)" memory-anon
    row "stream $MEM_OBJECTS × 1 MiB: VmHWM MiB (nginx: summed over processes)" memory-hwm
    row "ours peak RSS − edge budget ($((MEM_EDGE_BYTES >> 20)) MiB), MiB" memory-over-budget
    row "fill, new $FILL_SIZE objects at $FILL_RATE req/s ($fill_secs s): achieved req/s" fill-rate
    row "fill: p50 µs" fill-p50
    row "fill: p99 µs" fill-p99
    row "fill: reserve writes given up (must be 0)" fill-abandoned
    row "fill: requests that bypassed the reserve, UNAVAILABLE (must be 0)" fill-unavailable
    row "fill: edge fills skipped" fill-skipped
    row "fill: objects read back that were hits (ours: reserve hits), %" fill-hit-pct %.2f
    row "fill: highest rate held (FILL_FIND_MAX: every object written, ≤ 5 % short), req/s" fill-max-rate
    echo
    echo "Higher is better for req/s; lower for CPU per request, latency and memory. Medians of $ROUNDS round(s)."
    [[ -z ${fill_stop:-} ]] || echo "Fill, $fill_stop."
    echo "Raw wrk output and logs: $RESULTS_DIR"
    if ((${#warnings[@]})); then
        echo
        echo "Warnings:"
        printf -- '- %s\n' "${warnings[@]}"
    fi
    if ((${#failed_checks[@]})); then
        echo
        echo "Failed checks:"
        printf -- '- %s\n' "${failed_checks[@]}"
    fi
} | tee "$RESULTS_DIR/summary.md"

((${#failed_checks[@]} == 0))
