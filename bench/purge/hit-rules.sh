#!/usr/bin/env bash
# Proxy hit throughput with 0 and with 10,000 purge rules outstanding (SPEC §10: a look-up must not grow
# with the number of purges). Two zones serve the same object from the edge tier; zone b carries 10,000
# rules that do not target it (2,500 each of files, prefixes, hosts and tags), added after the object was
# cached, so every hit on b is judged against all four tables. wrk alternates between the zones, ROUNDS
# times each, and the medians are compared.
#
#   bash bench/purge/hit-rules.sh            # DURATION=10s ROUNDS=3 CONNS=32 THREADS=2
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
API_PORT=${API_PORT:-28787}
PROXY_PORT=${PROXY_PORT:-28788}
ORIGIN_PORT=${ORIGIN_PORT:-29000}
work=$(mktemp -d /tmp/purge-hit-rules.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet
bin=target/release/cache-reserve
data=(--data-dir "$work/data")

mkdir -p "$work/site" && head -c 4096 /dev/urandom | base64 > "$work/site/hello.txt"
python3 examples/origin.py "$work/site" "$ORIGIN_PORT" >/dev/null 2>&1 & pids+=($!)
for z in a.example b.example; do
    "$bin" zone create "$z" --origin "http://127.0.0.1:$ORIGIN_PORT" "${data[@]}" --create >/dev/null
done
token=$("$bin" token create --name bench --permission "Cache Purge" "${data[@]}")
# Rules are retired seconds after their work is done, once every live node has swept for them. A node row that
# stays live and never sweeps holds them outstanding, as a long background pass would.
python3 - "$work/data/control.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
far = int((time.time() + 86400) * 1e6)
db.execute("INSERT INTO nodes (id, seen_revision, synced_on, started_on, swept_revision) VALUES ('never-sweeps', 0, ?, ?, 0)", (far, far))
db.commit()
PY
RUST_LOG=warn "$bin" serve "${data[@]}" --api-listen "127.0.0.1:$API_PORT" --proxy-listen "127.0.0.1:$PROXY_PORT" \
    >"$work/serve.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/hello.txt" && break; sleep 0.1; done
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$API_PORT/client/v4/zones" -H "Authorization: Bearer $token" >/dev/null && break; sleep 0.1; done
for z in a.example b.example; do
    for _ in 1 2; do curl -fs -o /dev/null -H "Host: $z" "http://127.0.0.1:$PROXY_PORT/hello.txt"; done
done

zone_b=$(curl -fs "http://127.0.0.1:$API_PORT/client/v4/zones?name=b.example" -H "Authorization: Bearer $token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["result"][0]["id"])')
post() {
    curl -fs -o /dev/null -X POST "http://127.0.0.1:$API_PORT/client/v4/zones/$zone_b/purge_cache" \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$1"
}
items() { python3 -c "import json,sys; print(json.dumps({'$1': [sys.argv[1].format(i=i) for i in range($2, $2 + 500)]}))" "$3"; }
for start in 0 500 1000 1500 2000; do
    post "$(items files "$start" 'https://b.example/other/{i}')"
    post "$(items prefixes "$start" 'b.example/p{i}/')"
    post "$(items hosts "$start" 'h{i}.b.example')"
    post "$(items tags "$start" 'tag-{i}')"
done
held=$(curl -fs "http://127.0.0.1:$API_PORT/metrics" | awk '$1 == "cache_reserve_purge_rules" {print $2}')
[ "$held" = 10000 ] || { echo "expected 10000 rules held, got $held" >&2; exit 1; }
# The object is still an edge hit on both zones.
for z in a.example b.example; do
    status=$(curl -fs -D - -o /dev/null -H "Host: $z" "http://127.0.0.1:$PROXY_PORT/hello.txt" | tr -d '\r' | awk -F': ' 'tolower($1)=="cf-cache-status" {print $2}')
    [ "$status" = HIT ] || { echo "$z: expected HIT, got $status" >&2; exit 1; }
done

declare -A rps
for r in $(seq "$ROUNDS"); do
    for z in a.example b.example; do
        out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "Host: $z" "http://127.0.0.1:$PROXY_PORT/hello.txt")
        if grep -qE '^  (Non-2xx|Socket errors)' <<<"$out"; then echo "$out" >&2; exit 1; fi
        rps[$z]+="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") "
        echo "round $r $z: $(awk '/^Requests\/sec:/ {print $2}' <<<"$out") req/s" >&2
    done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
a=$(median "${rps[a.example]}"); b=$(median "${rps[b.example]}")
echo "| rules outstanding on the zone | edge hits/s (median of $ROUNDS × $DURATION, wrk -t$THREADS -c$CONNS) |"
echo "|---|---|"
echo "| 0 | $a |"
echo "| 10,000 (files, prefixes, hosts, tags) | $b ($(python3 -c "print(f'{$b / $a:.3f}')")×) |"
