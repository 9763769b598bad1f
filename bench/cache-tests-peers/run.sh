#!/usr/bin/env bash
# Runs the public HTTP cache test suite (npm http-cache-tests 0.4.5, the suite behind cache-tests.fyi;
# the same pinned copy scripts/cache-tests/run.sh uses) against other caching proxies on this machine,
# and counts the results the way we count our own: scripts/cache-tests/summarize.mjs (the suite's own
# determineTestResult, dependencies honoured) with an empty known-differences list, so nothing is
# excused and nothing is re-run. "required failed" is ⛔️ + 🔹 + ⁉️ + ↻ over required tests.
#
# Peers, each the Debian 12 package (installed with apt-get when missing; the package's services are
# not started, run.sh starts its own instances), each with the suite's reference configuration for its
# docker image (docker/ in the suite) adapted to loopback and free ports; the files are in
# bench/cache-tests-peers/<peer>/, each saying what was changed and why:
#   nginx          proxy_cache (nginx 1.22.1-9+deb12u11)
#   varnish        Varnish Cache 7.1.1 (7.1.1-2+deb12u1), default VCL, default_ttl=0 default_grace=0
#   squid          Squid 5.7 (5.7-2+deb12u6), reverse proxy (accel), memory cache
#   trafficserver  Apache Traffic Server (package 9.2.5+ds-0+deb12u4, reports itself as 9.2.9)
# (Apache httpd's mod_cache, which the suite's image also has, is not measured.)
#
# One instance of the suite's origin server (127.0.0.1, free port) serves every run; each run starts
# a fresh peer (empty cache) on 127.0.0.1 on a free port, runs the whole suite through it with the
# suite's CLI (as scripts/cache-tests/run.sh does: `npm run cli --base=http://localhost:PORT`), stops
# the peer and summarises. Runs are sequential, never in parallel. Everything started is stopped on exit.
#
# Usage (as root: apt-get, and the peers drop privileges to their own users):
#   bash bench/cache-tests-peers/run.sh [nginx|varnish|squid|trafficserver|all]...   # default: all
#   RUNS=1 RESULTS_DIR=/tmp/peers bash bench/cache-tests-peers/run.sh squid
# Environment:
#   RESULTS_DIR          default a new temp dir; gets <peer>.run<N>.json (the CLI's output),
#                        <peer>.run<N>.summary.txt, <peer>.run<N>.log/ (the peer's config and logs),
#                        origin.log, versions.txt, results.tsv
#   RUNS                 runs per peer, 2
#   CACHE_TESTS_TIMEOUT  seconds allowed for one run of the suite, 900
# Exit status: 0 when every run produced results (whatever they were), 1 otherwise, 2 usage.
#
# Measured with this script on a 2-core Debian 12 machine (node 20), two runs each, both runs identical
# (same failing tests); of 165 required and 95 optimal tests (350 run by the CLI):
#   peer            version   required failed   optimal passed   time per run
#   nginx           1.22.1    47                50 of 95          14 s
#   varnish         7.1.1     35                40 of 95          14 s
#   squid           5.7       24                49 of 95         130 s (see below)
#   trafficserver   9.2.9     34                65 of 95          14 s
# The same counting over the results the suite itself ships for older versions (results/*.json in the
# package: nginx 1.18, Varnish 6.4, Squid 4.13, ATS 8.0.8) gives 47/50, 36/40, 24/49, 34/55.
# Squid's runs spend ~115 s idle at the end: in 304-etag-update-response-Content-Length Squid sends the
# 304's Content-Length: 10 with the stored 5-byte body, and the client waits for the rest until Squid
# closes the connection about 2 minutes later (that test alone, --id, takes 124 s).
# Numbers from cache-tests.fyi are not comparable: the site runs the suite's current tests (160
# required, 105 optimal) against newer versions.
set -euo pipefail

usage() { echo "usage: $0 [nginx|varnish|squid|trafficserver|all]..." >&2; }
peers=()
for arg in "${@:-all}"; do
    case "$arg" in
        nginx | varnish | squid | trafficserver) peers+=("$arg") ;;
        all) peers+=(nginx varnish squid trafficserver) ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) usage; exit 2 ;;
    esac
done

abspath() { if [[ $1 == /* ]]; then printf '%s\n' "$1"; else printf '%s\n' "$PWD/$1"; fi; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
ct=$root/scripts/cache-tests
results=${RESULTS_DIR:+$(abspath "$RESULTS_DIR")}
runs=${RUNS:-2}
suite_timeout=${CACHE_TESTS_TIMEOUT:-900}

say() { echo "cache-tests-peers: $*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (apt-get; the peers start as root and drop to their own users)"
command -v node >/dev/null || die "node is not installed"
command -v npm >/dev/null || die "npm is not installed"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"

if [[ -z $results ]]; then results=$(mktemp -d "${TMPDIR:-/tmp}/cache-tests-peers-results.XXXXXX"); fi
mkdir -p "$results"
say "results in $results"

# shellcheck source=../../scripts/cache-tests/harness.sh
. "$ct/harness.sh"
harness_start cache-tests-peers
chmod 755 "$work" # the peers' own users (proxy, trafficserver, varnish) read their configs under it

# ---- the peers' packages. Installing a Debian package of a daemon normally starts it on its default
# port (nginx :80, squid :3128, varnish :6081, trafficserver :8080): a policy-rc.d that denies starts
# is put in place for the install when the machine has none (containers usually have one already).
declare -A pkg_of=([nginx]=nginx [varnish]=varnish [squid]=squid [trafficserver]=trafficserver)
declare -A bin_of=([nginx]=nginx [varnish]=varnishd [squid]=squid [trafficserver]=traffic_server)
missing=()
for p in "${peers[@]}"; do
    PATH=$PATH:/usr/sbin:/sbin command -v "${bin_of[$p]}" >/dev/null || missing+=("${pkg_of[$p]}")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt-get)"
    policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# put here by bench/cache-tests-peers/run.sh for its apt-get install\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy=/usr/sbin/policy-rc.d
    fi
    rc=0
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 || rc=$?
    [[ -z $policy ]] || rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
fi
export PATH=$PATH:/usr/sbin:/sbin

install_suite
suite_version=$(node -p "require('$suite/package.json').version")

# ---- versions
version_line() { # peer: what the binary says of itself, one line
    case $1 in
        nginx) nginx -v 2>&1 | head -n1 ;;
        varnish) varnishd -V 2>&1 | head -n1 ;;
        squid) squid -v | head -n1 ;;
        trafficserver) traffic_server -V 2>/dev/null | grep -m1 'Traffic Server' ;;
    esac | tr -s ' \t' ' '
}
version_of() { # peer: the bare version number
    version_line "$1" | grep -Eo '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1
}
{
    echo "http-cache-tests $suite_version; node $(node --version); $(. /etc/os-release && echo "$PRETTY_NAME"); $(nproc) cores"
    for p in "${peers[@]}"; do
        echo "$p: $(version_line "$p") (Debian package ${pkg_of[$p]} $(dpkg-query -W -f='${Version}' "${pkg_of[$p]}"))"
    done
} >"$results/versions.txt"
cat "$results/versions.txt" >&2

free_port() {
    node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'
}
port_open() { (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_origin
origin_port=${origin##*:}
say "origin server on 127.0.0.1:$origin_port"

render() { # template out dir port: fills in @DIR@ @PORT@ @ORIGIN_PORT@
    sed -e "s|@DIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@ORIGIN_PORT@|$origin_port|g" "$1" >"$2"
}

# Starts PEER on PORT with its config under DIR (empty); sets peer_pid. Output to DIR/stdout.log.
start_peer() { # peer dir port
    local peer=$1 dir=$2 port=$3
    case $peer in
        nginx)
            mkdir -p "$dir/tmp" "$dir/cache"
            render "$here/nginx/nginx.conf" "$dir/nginx.conf" "$dir" "$port"
            nginx -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 || return 1
            nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >>"$dir/stdout.log" 2>&1 &
            ;;
        varnish)
            render "$here/varnish/default.vcl" "$dir/default.vcl" "$dir" "$port"
            # serve.sh's command line, plus -F (foreground), -n (scratch working dir), -T on loopback.
            varnishd -F -n "$dir/varnish" -j unix -a "127.0.0.1:$port" -T 127.0.0.1:0 -f "$dir/default.vcl" \
                -p default_ttl=0 -p default_grace=0 -p default_keep=3600 -s malloc,64M >"$dir/stdout.log" 2>&1 &
            ;;
        squid)
            render "$here/squid/squid.conf" "$dir/squid.conf" "$dir" "$port"
            chown -R proxy:proxy "$dir"
            squid -k parse -f "$dir/squid.conf" >"$dir/stdout.log" 2>&1 || return 1
            squid -N -f "$dir/squid.conf" >>"$dir/stdout.log" 2>&1 &
            ;;
        trafficserver)
            mkdir -p "$dir/etc" "$dir/log" "$dir/run" "$dir/cache" "$dir/var"
            cp -r /etc/trafficserver/. "$dir/etc/"
            rm -f "$dir/etc/ip_allow.config"
            render "$here/trafficserver/records.config" "$dir/etc/records.config" "$dir" "$port"
            render "$here/trafficserver/remap.config" "$dir/etc/remap.config" "$dir" "$port"
            cp "$here/trafficserver/ip_allow.yaml" "$dir/etc/ip_allow.yaml"
            echo "$dir/cache 256M" >"$dir/etc/storage.config" # Debian's: /var/cache/trafficserver 256M
            cat >"$dir/runroot.yaml" <<EOF
prefix: /usr
exec_prefix: /usr
bindir: /usr/bin
sbindir: /usr/sbin
sysconfdir: $dir/etc
datadir: $dir/cache
includedir: /usr/include
libdir: /usr/lib/trafficserver
libexecdir: /usr/lib/trafficserver/modules
localstatedir: $dir/var
runtimedir: $dir/run
logdir: $dir/log
cachedir: $dir/cache
EOF
            chown -R trafficserver:trafficserver "$dir"
            traffic_server --run-root="$dir/runroot.yaml" >"$dir/stdout.log" 2>&1 &
            ;;
    esac
    peer_pid=$!
    track "$peer_pid"
    local i
    for ((i = 0; i < 600; i++)); do
        port_open "$port" && return 0
        kill -0 "$peer_pid" 2>/dev/null || { say "$peer exited at start"; return 1; }
        sleep 0.1
    done
    say "$peer did not listen on $port within 60 s"
    return 1
}

# One run of one peer; appends a line to results.tsv.
status=0
printf 'peer\trun\tversion\trequired_failed\toptimal_passed\toptimal_total\tseconds\n' >"$results/results.tsv"
run_peer() { # peer n
    local peer=$1 n=$2 name=$1.run$2 dir port started cli_rc=0 line req opt tot secs
    dir=$results/$name.log
    rm -rf "$dir"; mkdir -p "$dir"
    port=$(free_port)
    say "[$name] starting $peer on 127.0.0.1:$port"
    started=$SECONDS
    if ! start_peer "$peer" "$dir" "$port"; then
        cat "$dir/stdout.log" >&2 2>/dev/null || true
        [[ -z ${peer_pid:-} ]] || stop "$peer_pid"
        echo "cache-tests $peer: ERROR $peer did not start (see $dir)" >"$results/$name.summary.txt"
        status=1; return
    fi
    say "[$name] running the suite against http://localhost:$port"
    run_cli "http://localhost:$port" "" "$results/$name.json" "$results/$name.cli.log" "$suite_timeout" || cli_rc=$?
    secs=$((SECONDS - started))
    kill -0 "$peer_pid" 2>/dev/null || say "[$name] $peer died during the run (see $dir)"
    stop "$peer_pid"
    peer_pid=
    node "$ct/summarize.mjs" --config "$peer" --known /dev/null "$results/$name.json" \
        >"$results/$name.summary.txt" 2>&1 || true
    ((cli_rc == 0)) || echo "the suite's CLI exited with $cli_rc (see $results/$name.cli.log)" >>"$results/$name.summary.txt"
    line=$(grep -E "^cache-tests $peer: required failed" "$results/$name.summary.txt" || true)
    if [[ -z $line || $cli_rc != 0 ]]; then
        say "[$name] no usable results (see $results/$name.summary.txt)"
        status=1
    fi
    if [[ $line =~ required\ failed\ ([0-9]+).*optimal\ passed\ ([0-9]+)\ of\ ([0-9]+) ]]; then
        req=${BASH_REMATCH[1]} opt=${BASH_REMATCH[2]} tot=${BASH_REMATCH[3]}
    else
        req=- opt=- tot=-
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$peer" "$n" "$(version_of "$peer")" "$req" "$opt" "$tot" "$secs" >>"$results/results.tsv"
    say "[$name] done in $secs s: ${line:-no summary}"
}

for peer in "${peers[@]}"; do
    for ((n = 1; n <= runs; n++)); do run_peer "$peer" "$n"; done
done

echo
cat "$results/versions.txt"
echo
column -t -s $'\t' "$results/results.tsv" 2>/dev/null || cat "$results/results.tsv"
echo
echo "required failed = ⛔️+🔹+⁉️+↻ over required tests, as scripts/cache-tests/summarize.mjs counts them (no known list)"
echo "results in $results"
exit "$status"
