#!/usr/bin/env bash
# Compares our proxy (`cache-reserve serve`) with nginx proxy_cache on loopback, with wrk.
#
#   bench/proxy/run.sh [edge|reserve|latency|memory|all]...     (default: all)
#
# Scenarios, each measured against nginx and ours in the same run, alternating:
#   edge     requests/s for edge-tier hits: random over EDGE_OBJECTS objects of 1 KiB, then of 64 KiB
#   reserve  requests/s for reserve hits: random over RESERVE_OBJECTS x 64 KiB, ours with a 1 MiB edge
#   latency  p50/p99 at a fixed RATE (req/s) over the 1 KiB edge set and over the reserve set
#   memory   peak RSS while MEM_OBJECTS x 1 MiB distinct objects stream through once (256 MiB edge)
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
#   SAMPLE [20]        objects curl'd after a fill to check the next fetch is a hit
#   SETTLE_TIMEOUT [120]  seconds to wait after a fill for the servers to go idle
#
# Exit status: 0, or 1 when a check failed (errors, misses during a hit run, wrong cache headers);
# the table is printed either way, with the failed checks under it.
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
SAMPLE=${SAMPLE:-20}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-120}
PEER_ONLY=${PEER_ONLY:-0}
ZONE=bench.test

# ---------------------------------------------------------------------------------------------------
# Which scenarios
# ---------------------------------------------------------------------------------------------------
want_edge=0 want_reserve=0 want_latency=0 want_memory=0
for arg in "${@:-all}"; do
    case $arg in
        edge) want_edge=1 ;;
        reserve) want_reserve=1 ;;
        latency) want_latency=1 ;;
        memory) want_memory=1 ;;
        all) want_edge=1 want_reserve=1 want_latency=1 want_memory=1 ;;
        *) echo "usage: $0 [edge|reserve|latency|memory|all]..." >&2; exit 2 ;;
    esac
done

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
((want_edge || want_latency)) && generate "$www/s1k" "$EDGE_OBJECTS" 1024
((s64k_count)) && generate "$www/s64k" "$s64k_count" 65536
((want_memory)) && generate "$www" 1 1048576 && mv "$www/0" "$www/big.bin"
settle

origin_port=$(free_port)
render "$here/origin.conf.in" "$scratch/origin/nginx.conf" USER="$(user_line)" DIR="$scratch/origin" \
    LOGS="$RESULTS_DIR" ROOT="$www" PORT="$origin_port"
: >"$scratch/origin/access.log"
start_nginx "$scratch/origin/nginx.conf" "$scratch/origin" "$RESULTS_DIR/origin-error.log"
origin_url=http://127.0.0.1:$origin_port
((want_edge || want_latency)) && probe=/s1k/0 || probe=/s64k/0
((want_memory && !(want_edge || want_latency || want_reserve))) && probe=/big/0
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
# zone; sets ours_pid and ours_url. Does nothing with PEER_ONLY=1.
start_ours() {
    [[ $PEER_ONLY == 1 ]] && return 0
    local name=$1 bytes=$2 data=$scratch/$1/data
    local api_port proxy_port zone_id token
    api_port=$(free_port)
    proxy_port=$(free_port)
    mkdir -p "$data"
    zone_id=$(run "$BIN" zone create "$ZONE" --origin "$origin_url" --data-dir "$data")
    echo "zone $zone_id"
    token=$("$BIN" token create --name bench --permission "Zone Settings Write" --data-dir "$data")
    show "$BIN" token create --name bench --permission "Zone Settings Write" --data-dir "$data"
    local serve=("$BIN" serve --data-dir "$data" --api-listen "127.0.0.1:$api_port"
        --proxy-listen "127.0.0.1:$proxy_port" --edge-cache-bytes "$bytes")
    show "${serve[@]}"
    "${serve[@]}" >"$RESULTS_DIR/$name.log" 2>&1 &
    ours_pid=$!
    wait_http "http://127.0.0.1:$api_port/client/v4/openapi.json" "$ours_pid" ||
        { tail -20 "$RESULTS_DIR/$name.log" >&2; exit 1; }
    # The token is a secret: shown as $token.
    echo "+ CLOUDFLARE_BASE_URL=http://127.0.0.1:$api_port/client/v4 CLOUDFLARE_API_TOKEN=\$token $BIN reserve on $zone_id" >&2
    CLOUDFLARE_BASE_URL=http://127.0.0.1:$api_port/client/v4 CLOUDFLARE_API_TOKEN=$token \
        "$BIN" reserve on "$zone_id" >"$RESULTS_DIR/$name-reserve-on.json"
    ours_url=http://127.0.0.1:$proxy_port
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
# as RESULTS_DIR/NAME.txt; every answer must be a 200.
walk() {
    local name=$1 server=$2 prefix=$3 count=$4 parallel=${5:-4} url start ok
    url=$(url_of "$server")
    start=$(date +%s.%N)
    run_to "$scratch/walk.out" curl -s --no-progress-meter -Z --parallel-max "$parallel" -H "Host: $ZONE" \
        -o /dev/null -w "$status_format" "${url}${prefix}[0-$((count - 1))]" || true
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
# requests that reached the origin (every scenario measures hits). Sets wrk_out.
run_wrk() {
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
    ((after == before)) || check_failed "$name: $((after - before)) requests reached the origin (not all hits)"
    if grep -qE '^  (Non-2xx|Socket errors)' "$wrk_out"; then
        check_failed "$name: $(grep -E '^  (Non-2xx|Socket errors)' "$wrk_out" | xargs)"
    fi
}

# Requests/s over random objects PREFIXn (n < COUNT), each server in turn, ROUNDS times.
throughput() {
    local key=$1 prefix=$2 count=$3 r server
    for ((r = 1; r <= ROUNDS; r++)); do
        for server in $(order "$r"); do
            say "$key: $server (round $r)"
            run_wrk "$key-$server-r$r" -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s --latency \
                -H "Host: $ZONE" -s "$here/random.lua" "$(url_of "$server")" -- "$prefix" "$count"
            record "$key" "$server" "$(awk '/^Requests\/sec:/ { print $2 }' "$wrk_out")"
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
if ((want_reserve || want_latency)); then
    say "reserve stage: nginx peer and ours with --edge-cache-bytes $TINY_EDGE_BYTES"
    start_peer peer-reserve
    start_ours ours-reserve "$TINY_EDGE_BYTES"
    for server in "${servers[@]}"; do
        say "fill $server with $RESERVE_OBJECTS x /s64k/"
        walk "fill-reserve-$server" "$server" /s64k/ "$RESERVE_OBJECTS"
    done
    settle
    # Ours skips the reserve for objects that arrive faster than the disk takes them (its write buffer
    # is bounded): walk again, up to three times, until no answer was a miss.
    if [[ " ${servers[*]} " == *" ours "* ]]; then
        for pass in 2 3 4; do
            say "ours: fill pass $pass (objects the last pass could not store are misses now)"
            walk "fill-reserve-ours-pass$pass" ours /s64k/ "$RESERVE_OBJECTS"
            settle
            misses=$(grep -c '|MISS|' "$scratch/walk.out" || true)
            ((misses == 0)) && break
        done
    fi
    for server in "${servers[@]}"; do
        [[ $server == ours ]] && want=HIT || want=
        check_hits "$server" /s64k/ "$RESERVE_OBJECTS" "$want"
    done
    ((want_reserve)) && throughput reserve-64k /s64k/ "$RESERVE_OBJECTS"
    ((want_latency)) && latency latency-reserve /s64k/ "$RESERVE_OBJECTS"
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

# One table row: LABEL, then KEY's medians rounded, and their ratio. Nothing when KEY was not measured.
row() {
    local label=$1 key=$2 n o ratio=
    n=$(median "$key" nginx)
    o=$(median "$key" ours)
    [[ -z $n && -z $o ]] && return 0
    [[ -n $n && -n $o ]] && ratio=$(echo "$o / $n" | bc -l | xargs printf '%.2f')
    printf '| %s | %s | %s | %s |\n' "$label" "${n:+$(printf '%.0f' "$n")}" "${o:+$(printf '%.0f' "$o")}" "${ratio:-–}"
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
    echo
    echo "Higher is better for req/s; lower for latency and memory. Medians of $ROUNDS round(s)."
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
