# shellcheck shell=bash
# Shared by scripts/cache-tests/run.sh and bench/cache-tests-peers/run.sh: tracking and stopping the
# processes a run starts, the pinned suite, its origin server and its CLI. Source it after defining say()
# and die() and setting `ct` (this directory) and `results` (where logs go); then call harness_start.

suite=$ct/node_modules/http-cache-tests

# Makes $work (a scratch dir named after PREFIX) and stops every tracked process, and removes $work, on exit.
harness_start() { # prefix
    work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    mkdir "$work/pids"
    trap harness_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
track() { : >"$work/pids/$1"; }
untrack() { rm -f "$work/pids/$1"; }
stop() { # pid: TERM, up to 10 s, then KILL; reaps it if it is our child
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    untrack "$pid"
}
harness_cleanup() {
    local rc=$? f pid i
    trap - EXIT INT TERM
    set +e
    for f in "$work"/pids/*; do
        [[ -e $f ]] || continue
        kill -TERM "${f##*/}" 2>/dev/null || true
    done
    for ((i = 0; i < 100; i++)); do
        pid=
        for f in "$work"/pids/*; do [[ -e $f ]] && kill -0 "${f##*/}" 2>/dev/null && pid=${f##*/}; done
        [[ -n $pid ]] || break
        sleep 0.1
    done
    for f in "$work"/pids/*; do [[ -e $f ]] && kill -KILL "${f##*/}" 2>/dev/null; done
    rm -rf "$work"
    exit "$rc"
}

# The suite, pinned by package-lock.json; reinstalled when missing or when the lock changed.
install_suite() {
    local stamp=$ct/node_modules/.cache-tests-stamp want
    want=$(cat "$ct/package.json" "$ct/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [[ ! -f $suite/cli.mjs || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
        say "installing the suite (npm ci) into $ct/node_modules"
        (cd "$ct" && npm ci --no-audit --no-fund --loglevel=error) >&2
        echo "$want" >"$stamp"
    fi
}

# Waits until FILE has a line matching the extended regex, printing the first match; fails if PID dies.
wait_for_line() { # file regex pid what
    local i m
    for ((i = 0; i < 300; i++)); do
        m=$(sed 's/\x1b\[[0-9;]*m//g' "$1" 2>/dev/null | grep -Eo -m1 "$2" || true)
        if [[ -n $m ]]; then printf '%s\n' "$m"; return 0; fi
        kill -0 "$3" 2>/dev/null || { say "$4 exited:"; cat "$1" >&2; return 1; }
        sleep 0.1
    done
    say "$4 did not start within 30 s:"; cat "$1" >&2
    return 1
}

# Starts the suite's origin server on a free port of 127.0.0.1; sets origin_pid and origin (host:port).
start_origin() {
    (cd "$suite" && exec env npm_config_port=0 npm_config_protocol=http npm_config_pidfile="$work/origin.pid" \
        node -r "$ct/origin-loopback.cjs" server/server.mjs) >"$results/origin.log" 2>&1 &
    origin_pid=$!
    track "$origin_pid"
    origin=$(wait_for_line "$results/origin.log" 'Listening on http://127\.0\.0\.1:[0-9]+' "$origin_pid" "the origin server") ||
        die "could not start the suite's origin server"
    origin=${origin#Listening on http://}
}

# Runs the suite's CLI (as `npm run cli --base=BASE [--id=ID]` would) with a time limit; stdout to OUT.
run_cli() { # base id out err seconds
    local pid rc=0
    (cd "$suite" && exec env npm_config_base="$1" npm_package_config_base="$1" npm_config_id="$2" \
        npm_package_config_id="$2" NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--dns-result-order=ipv4first" \
        timeout --kill-after=10 "$5" node --no-warnings cli.mjs) >"$3" 2>"$4" &
    pid=$!
    track "$pid"
    wait "$pid" || rc=$?
    untrack "$pid"
    [[ $rc -ne 124 ]] || say "the suite timed out after $5 s ($4)"
    return "$rc"
}
