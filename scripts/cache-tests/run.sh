#!/usr/bin/env bash
# Runs the public HTTP cache test suite (npm http-cache-tests 0.4.5, the suite behind cache-tests.fyi)
# against cache-reserve's proxy, in one or both configurations, and fails on any required-test failure
# that is not in known-differences.txt:
#   edge     the defaults: the zone's reserve off, answers from the edge tier (memory);
#   reserve  --edge-cache-bytes 0 --reserve-min-ttl 0s and the zone's reserve on, so hits come from disk.
# Each configuration gets a fresh data dir and its own proxy; both share one instance of the suite's
# origin server (every test uses its own UUID path). They run one after the other: CACHE_TESTS_PARALLEL=1
# runs them side by side, which works but on 2 cores makes the reserve configuration's timing-sensitive
# tests (a 304 refresh or new variant read back at once) fail far more often. An unexpected required
# failure is re-run once on its own (`--id`); if it passes then it is reported as FLAKY and does not
# fail the run. A failed optional test that required tests depend on hides them (the suite does not count
# them): each such root is re-run on its own, and if one passes the whole suite is run once more and that
# run is the one reported (the first is kept as <config>.first.json). Results are classified by the
# suite's own determineTestResult (summarize.mjs).
#
# By hand, from anywhere (needs node + npm; installs the suite into scripts/cache-tests/node_modules):
#   cargo build && bash scripts/cache-tests/run.sh [edge|reserve|both]      # default: both
#   CACHE_RESERVE_BIN=target/release/cache-reserve RESULTS_DIR=/tmp/ct bash scripts/cache-tests/run.sh edge
# Environment:
#   CACHE_RESERVE_BIN       default target/debug/cache-reserve of this repo; a relative path is taken
#                           from the current directory, else from the repo's
#   RESULTS_DIR             default a new temp dir; gets <config>.json, <config>.summary.txt,
#                           <config>.proxy.log, <config>.metrics, <config>.rerun/<id>.log, origin.log
#   CACHE_TESTS_PARALLEL    0 (see above)
#   CACHE_TESTS_TIMEOUT     seconds allowed for one full run of the suite, 900
#   CACHE_TESTS_MAX_RERUNS  re-runs per configuration, 50
# Summarise a saved results file again: node scripts/cache-tests/summarize.mjs RESULTS_DIR/edge.json
#
# Debug one test: `bash scripts/cache-tests/run.sh reserve --id=freshness-max-age` sets up as above, runs
# only that test (the suite's --id mode, dependencies not honoured) and prints its dump: every request
# and response on the client side and on the origin side, then the proxy's log and the result symbol;
# the exit status is 0 only for a pass. Against a proxy you started yourself (zone `localhost`):
#   cd scripts/cache-tests/node_modules/http-cache-tests
#   npm run --silent cli --base=http://localhost:PROXY_PORT --id=freshness-max-age
# with the suite's origin server started by
#   npm_config_port=0 npm_config_protocol=http npm_config_pidfile=/tmp/origin.pid \
#     node -r ../../origin-loopback.cjs server/server.mjs    # prints "Listening on http://127.0.0.1:PORT/"
# Exit status: 0 all configurations clean, 1 an unexpected required failure (or a broken run), 2 usage.
set -euo pipefail

usage() { echo "usage: $0 [edge|reserve|both] [--id=TEST-ID]" >&2; }
mode=both only_id=
for arg in "$@"; do
    case "$arg" in
        edge | reserve | both) mode=$arg ;;
        --id=?*) only_id=${arg#--id=} ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) usage; exit 2 ;;
    esac
done
case "$mode" in
    edge) configs=(edge) ;;
    reserve) configs=(reserve) ;;
    both) configs=(edge reserve) ;;
esac

# Paths given in the environment are relative to the caller's directory; everything else to the repo.
abspath() { if [[ $1 == /* ]]; then printf '%s\n' "$1"; else printf '%s\n' "$PWD/$1"; fi; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(abspath "${CACHE_RESERVE_BIN:-$root/target/debug/cache-reserve}")
# A relative CACHE_RESERVE_BIN that is not there from the caller's directory is taken from the repo's.
[[ -e $bin || ${CACHE_RESERVE_BIN:-/} == /* ]] || bin=$root/$CACHE_RESERVE_BIN
results=${RESULTS_DIR:+$(abspath "$RESULTS_DIR")}
parallel=${CACHE_TESTS_PARALLEL:-0}
suite_timeout=${CACHE_TESTS_TIMEOUT:-900}
max_reruns=${CACHE_TESTS_MAX_RERUNS:-50}
cd "$root"

say() { echo "cache-tests: $*" >&2; }
die() { say "error: $*"; exit 1; }

[[ -x $bin ]] || die "no cache-reserve binary at $bin (cargo build, or set CACHE_RESERVE_BIN)"
command -v node >/dev/null || die "node is not installed"
command -v npm >/dev/null || die "npm is not installed"
command -v timeout >/dev/null || die "timeout (coreutils) is not installed"

if [[ -z $results ]]; then results=$(mktemp -d "${TMPDIR:-/tmp}/cache-tests-results.XXXXXX"); fi
mkdir -p "$results"
say "results in $results"

ct=$here
# shellcheck source=harness.sh
. "$here/harness.sh"
harness_start cache-tests-work

install_suite
start_origin
say "origin server on $origin"

fetch_text() { node -e 'fetch(process.argv[1]).then(r => r.text()).then(t => process.stdout.write(t)).catch(e => { console.error(String(e)); process.exit(1) })' "$1"; }
metric() { # file tier result: sum of cache_reserve_tier_lookups_total over matching series
    awk -v tier="tier=\"$2\"" -v result="result=\"$3\"" '
        /^cache_reserve_tier_lookups_total\{/ && index($0, tier) && index($0, result) { s += $NF }
        END { print s + 0 }' "$1"
}

# One configuration, start to end. Progress to stderr; the report to $results/<config>.summary.txt and
# its status to $results/<config>.rc; never exits the script.
run_config() {
    local cfg=$1 data=$work/$cfg-data log=$results/$cfg.proxy.log line api port base token pid
    local started=$SECONDS cli_rc=0 rc=0 n=0 id sanity=
    local -a flags=()
    say "[$cfg] starting"
    if ! "$bin" zone create localhost --origin "http://$origin" --data-dir "$data" --create >/dev/null; then
        echo "cache-tests $cfg: ERROR could not create the zone" >"$results/$cfg.summary.txt"; echo 1 >"$results/$cfg.rc"; return
    fi
    if [[ $cfg == reserve ]]; then
        flags=(--edge-cache-bytes 0 --reserve-min-ttl 0s)
        if ! token=$("$bin" token create --name ci --permission "Zone Settings Write" --data-dir "$data"); then
            echo "cache-tests $cfg: ERROR could not create an API token" >"$results/$cfg.summary.txt"; echo 1 >"$results/$cfg.rc"; return
        fi
    fi
    "$bin" serve --data-dir "$data" --api-listen 127.0.0.1:0 --proxy-listen 127.0.0.1:0 "${flags[@]}" >"$log" 2>&1 &
    pid=$!
    track "$pid"
    if ! line=$(wait_for_line "$log" 'listening on http://[0-9.:]+.*proxy on http://[0-9.:]+' "$pid" "[$cfg] the proxy"); then
        stop "$pid"
        echo "cache-tests $cfg: ERROR the proxy did not start (see $log)" >"$results/$cfg.summary.txt"; echo 1 >"$results/$cfg.rc"; return
    fi
    api=$(grep -Eo 'listening on http://[0-9.:]+' <<<"$line"); api=${api#listening on http://}
    port=$(grep -Eo 'proxy on http://[0-9.:]+' <<<"$line"); port=${port##*:}
    base=http://localhost:$port
    if [[ $cfg == reserve ]]; then
        if ! CLOUDFLARE_BASE_URL=http://$api/client/v4 CLOUDFLARE_API_TOKEN=$token "$bin" reserve on localhost \
            >"$results/$cfg.reserve-on.json" 2>&1 || ! grep -q '"value": *"on"' "$results/$cfg.reserve-on.json"; then
            cat "$results/$cfg.reserve-on.json" >&2
            stop "$pid"
            echo "cache-tests $cfg: ERROR could not turn the reserve on" >"$results/$cfg.summary.txt"; echo 1 >"$results/$cfg.rc"; return
        fi
    fi
    if [[ -n $only_id ]]; then
        local out=$results/$cfg.id.log before
        before=$(wc -c <"$results/origin.log")
        say "[$cfg] proxy on $base (API $api), running $only_id"
        run_cli "$base" "$only_id" "$out" "$results/$cfg.cli.log" 120 || cli_rc=$?
        stop "$pid"
        {
            echo "== cache-tests $cfg --id=$only_id: client side"
            cat "$out" "$results/$cfg.cli.log"
            echo "== origin side"
            tail -c +$((before + 1)) "$results/origin.log"
            echo "== proxy log ($log)"
            cat "$log"
        } >"$results/$cfg.summary.txt"
        line=$(sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -A1 '^==== Results' | tail -n1)
        echo "cache-tests $cfg: $only_id ${line:-gave no result (exit $cli_rc)}" >>"$results/$cfg.summary.txt"
        if [[ $line == "✅ "* ]]; then echo 0 >"$results/$cfg.rc"; else echo 1 >"$results/$cfg.rc"; fi
        return
    fi
    local attempt roots_passed root_log
    for attempt in 1 2; do
        say "[$cfg] proxy on $base (API $api), running the suite"
        cli_rc=0 n=0
        run_cli "$base" "" "$results/$cfg.json" "$results/$cfg.cli.log" "$suite_timeout" || cli_rc=$?
        say "[$cfg] suite done in $((SECONDS - started)) s (exit $cli_rc)"
        fetch_text "http://$api/metrics" >"$results/$cfg.metrics" 2>&1 || true

        # Re-run each unexpected required failure once on its own.
        rm -rf "$results/$cfg.rerun" && mkdir -p "$results/$cfg.rerun"
        if node "$here/summarize.mjs" --list-unexpected --config "$cfg" "$results/$cfg.json" >"$work/$cfg.unexpected" 2>/dev/null; then
            if [[ -s $work/$cfg.unexpected ]]; then
                say "[$cfg] re-running $(wc -l <"$work/$cfg.unexpected") required failure(s) on their own (at most $max_reruns)"
            fi
            while IFS= read -r id; do
                ((n++ < max_reruns)) || { say "[$cfg] not re-running $id: over CACHE_TESTS_MAX_RERUNS"; continue; }
                # The file name as summarize.mjs's rerunFileName() makes it.
                run_cli "$base" "$id" "$results/$cfg.rerun/${id//[^A-Za-z0-9._=-]/_}.log" "$work/$cfg.rerun.err" 120 || true
            done <"$work/$cfg.unexpected"
        fi

        # A failed optional test hides the required tests that depend on it (the suite does not count them).
        # Re-run each such root on its own; if one passes, its failure was chance: run the suite once more.
        ((attempt == 1)) || break
        node "$here/summarize.mjs" --list-hidden-roots --config "$cfg" "$results/$cfg.json" >"$work/$cfg.roots" 2>/dev/null ||
            break
        roots_passed=
        while IFS= read -r id; do
            root_log=$work/$cfg.root.${id//[^A-Za-z0-9._=-]/_}.log
            run_cli "$base" "$id" "$root_log" "$work/$cfg.root.err" 120 || true
            if sed 's/\x1b\[[0-9;]*m//g' "$root_log" | grep -A1 '^==== Results' | tail -n1 | grep -Eq '^(✅|Y) '; then
                roots_passed+="$id "
            fi
        done <"$work/$cfg.roots"
        [[ -n $roots_passed ]] || break
        say "[$cfg] ${roots_passed% } failed in the suite but passed on its own, hiding required tests: running the suite again"
        mv "$results/$cfg.json" "$results/$cfg.first.json"
    done
    kill -0 "$pid" 2>/dev/null || sanity+="the proxy died during the run (see $log); "
    stop "$pid"

    # Does the configuration test what it claims? (README: counters on /metrics.)
    local m=$results/$cfg.metrics edge_hit reserve_hit reserve_lookups
    if grep -q '^cache_reserve_tier_lookups_total{' "$m"; then
        edge_hit=$(metric "$m" edge hit)
        reserve_hit=$(metric "$m" reserve hit)
        reserve_lookups=$((reserve_hit + $(metric "$m" reserve miss)))
        if [[ $cfg == edge ]]; then
            ((edge_hit > 0)) || sanity+="no edge-tier hit; "
            ((reserve_lookups == 0)) || sanity+="$reserve_lookups reserve lookups with the reserve off; "
        else
            ((reserve_hit > 0)) || sanity+="no reserve hit; "
            ((edge_hit == 0)) || sanity+="$edge_hit edge-tier hits with --edge-cache-bytes 0; "
        fi
    else
        sanity+="no tier counters on /metrics (see $m); "
    fi

    node "$here/summarize.mjs" --config "$cfg" --reruns "$results/$cfg.rerun" "$results/$cfg.json" \
        >"$results/$cfg.summary.txt" 2>&1 || rc=$?
    if ((rc > 1)); then
        echo "cache-tests $cfg: ERROR no usable results (see $results/$cfg.json, $results/$cfg.cli.log)" >>"$results/$cfg.summary.txt"
    fi
    if ((cli_rc != 0)); then
        echo "the suite's CLI exited with $cli_rc (see $results/$cfg.cli.log)" >>"$results/$cfg.summary.txt"
        rc=1
    fi
    if [[ -n $sanity ]]; then
        echo "cache-tests $cfg: SANITY CHECK FAILED: ${sanity%; }" >>"$results/$cfg.summary.txt"
        rc=1
    fi
    say "[$cfg] finished in $((SECONDS - started)) s"
    echo "$rc" >"$results/$cfg.rc"
}

if [[ $parallel == 1 && ${#configs[@]} -gt 1 ]]; then
    declare -a jobs=()
    for cfg in "${configs[@]}"; do
        run_config "$cfg" &
        jobs+=($!)
        track "$!"
    done
    for pid in "${jobs[@]}"; do wait "$pid" || true; untrack "$pid"; done
else
    for cfg in "${configs[@]}"; do run_config "$cfg"; done
fi

status=0
for cfg in "${configs[@]}"; do
    echo
    cat "$results/$cfg.summary.txt" 2>/dev/null || echo "cache-tests $cfg: ERROR no summary"
    [[ $(cat "$results/$cfg.rc" 2>/dev/null) == 0 ]] || status=1
done
echo
echo "results in $results"
for cfg in "${configs[@]}"; do
    grep -E "^cache-tests $cfg: " "$results/$cfg.summary.txt" 2>/dev/null || echo "cache-tests $cfg: ERROR no summary"
done
exit "$status"
