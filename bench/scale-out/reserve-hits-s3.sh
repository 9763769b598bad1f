#!/usr/bin/env bash
# Reserve hits read from S3: our proxy with no edge tier (`--edge-cache-bytes 0`: every hit is a reserve
# hit, its body a GET from the bucket) against nginx `proxy_pass` to the same S3 server for the same
# objects, with wrk, alternating, in one run.
#
#   bash bench/scale-out/reserve-hits-s3.sh
#
# Needs PostgreSQL and SeaweedFS (S3) described by the environment, as `scripts/services.sh` writes it
# (CACHE_RESERVE_TEST_POSTGRES, CACHE_RESERVE_TEST_S3_ENDPOINT, CACHE_RESERVE_TEST_S3_BUCKET, AWS_*), and
# the aws CLI (PyPI `awscli`; AWS_CLI, default .venv-awscli/bin/aws) for the upload and the presigning.
#
# Set-up, on 127.0.0.1: an origin (nginx, bench/proxy/origin.conf.in) serving COUNT objects of each SIZE;
# ours (`cache-reserve serve`, reserve on, a fresh PostgreSQL database and S3 prefix), filled through its
# proxy until every sampled object answers `x-cache-reserve: HIT`; the same files uploaded to S3 under
# PREFIX-nginx/ and nginx (2 workers, kept-alive upstream connections, no cache) in front of the S3
# server. nginx is given presigned URLs (SigV4 in the query, one per object, valid 2 h), so SeaweedFS
# checks a signature on every request from either side, as it does for ours, and the bucket needs no
# anonymous access. Every wrk run must be free of errors and non-2xx answers, and ours must send nothing
# to the origin.
#
# Environment (defaults in brackets): CACHE_RESERVE_BIN [a release build made here], RESULTS_DIR [a new
# /tmp/scale-out-hits.XXXXXX], COUNT [1000], SIZES ["65536 4096"], ROUNDS [2], DURATION [10s], CONNS [64],
# THREADS [2].
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

COUNT=${COUNT:-1000}
SIZES=${SIZES:-65536 4096}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
AWS_CLI=${AWS_CLI:-$repo/.venv-awscli/bin/aws}
ZONE=bench.test
[[ -x $AWS_CLI ]] || { echo "no aws CLI at $AWS_CLI: python3 -m venv .venv-awscli && .venv-awscli/bin/pip install awscli" >&2; exit 2; }

binary
scratch=$(mktemp -d -t scale-out-hits-scratch.XXXXXX)
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d -t scale-out-hits.XXXXXX)}
mkdir -p "$RESULTS_DIR"
: >"$RESULTS_DIR/results.tsv"
say "scratch $scratch, results $RESULTS_DIR"
echo "machine: $(nproc) cores, $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$AWS_CLI" --version 2>&1)"
user_line() { [[ $EUID == 0 ]] && echo 'user root;' || true; }
render() {
    local template=$1 out=$2; shift 2
    local args=() kv
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$template" >"$out"
}

say "objects: $COUNT of each of $SIZES bytes"
www=$scratch/www
run python3 - "$www" "$COUNT" $SIZES <<'EOF'
import os, sys
root, count, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
for size in sizes:
    d = f"{root}/s{size}"
    os.makedirs(d, exist_ok=True)
    block = os.urandom(size)
    for i in range(count):
        with open(f"{d}/{i}", "wb") as f:
            f.write((f"{d}/{i}\n".encode() + block)[:size])
EOF

say "origin"
origin_port=$(free_port)
mkdir -p "$scratch/origin/tmp"
render "$repo/bench/proxy/origin.conf.in" "$scratch/origin/nginx.conf" USER="$(user_line)" DIR="$scratch/origin" \
    LOGS="$RESULTS_DIR" ROOT="$www" PORT="$origin_port"
: >"$scratch/origin/access.log"
show nginx -c "$scratch/origin/nginx.conf" -p "$scratch/origin" -g 'daemon off;'
nginx -c "$scratch/origin/nginx.conf" -p "$scratch/origin" -e "$RESULTS_DIR/origin-error.log" -g 'daemon off;' &
origin_pid=$!
first_size=${SIZES%% *}
wait_http "http://127.0.0.1:$origin_port/s$first_size/0" "$origin_pid"
origin_requests() { wc -l <"$scratch/origin/access.log"; }

say "ours: a fresh database and prefix, reserve on, no edge tier"
name=hits_$(date +%s)_$$
fresh_stores "$name"
zone_id=$(run "$BIN" zone create "$ZONE" --origin "http://127.0.0.1:$origin_port")
token=$("$BIN" token create --name bench --permission "Zone Settings Write")
show "$BIN" token create --name bench --permission "Zone Settings Write"
start_node ours --edge-cache-bytes 0
ours_pid=$node_pid
echo "+ CLOUDFLARE_BASE_URL=$node_api CLOUDFLARE_API_TOKEN=\$token $BIN reserve on $zone_id" >&2
CLOUDFLARE_BASE_URL=$node_api CLOUDFLARE_API_TOKEN=$token "$BIN" reserve on "$zone_id" >"$RESULTS_DIR/reserve-on.json"
ours_url=$node_proxy

# Walks every object of every size through ours until none is a miss (a fill may skip the reserve
# when writes are behind), then samples: each must be a reserve hit.
status_format='%{http_code}|%header{cf-cache-status}|%header{x-cache-reserve}\n'
for size in $SIZES; do
    for pass in 1 2 3 4 5; do
        curl -s --no-progress-meter -Z --parallel-max 4 -H "Host: $ZONE" -o /dev/null -w "$status_format" \
            "$ours_url/s$size/[0-$((COUNT - 1))]" >"$scratch/walk.out" || true
        echo "    fill s$size pass $pass: $(sort "$scratch/walk.out" | uniq -c | xargs)"
        grep -q '|MISS|' "$scratch/walk.out" || break
        sleep 2
    done
done
sleep 2
for size in $SIZES; do
    bad=0
    for i in $(shuf -i "0-$((COUNT - 1))" -n 20); do
        line=$(curl -s -H "Host: $ZONE" -o /dev/null -w "$status_format" "$ours_url/s$size/$i")
        [[ $line == '200|HIT|HIT' ]] || bad=$((bad + 1))
    done
    ((bad == 0)) || check_failed "ours: $bad of 20 sampled s$size objects were not reserve hits"
    echo "    s$size: $((20 - bad)) of 20 sampled objects are reserve hits (200|HIT|HIT)"
done

say "nginx: the same files in S3 under $name-nginx/, presigned URLs"
s3_hostport=${CACHE_RESERVE_TEST_S3_ENDPOINT#http://}
run "$AWS_CLI" s3 cp --recursive --quiet --endpoint-url "$CACHE_RESERVE_TEST_S3_ENDPOINT" "$www" \
    "s3://$CACHE_RESERVE_TEST_S3_BUCKET/$name-nginx/"
# Presigned in-process with botocore (the aws CLI's library, vendored in it since 1.45): `aws s3 presign` per object is a Python
# start-up each.
run "$(dirname "$AWS_CLI")/python" - "$scratch" "$COUNT" "$CACHE_RESERVE_TEST_S3_ENDPOINT" \
    "$CACHE_RESERVE_TEST_S3_BUCKET" "$name-nginx" $SIZES <<'EOF'
import sys, urllib.parse
try:
    from awscli.botocore import session as boto_session  # awscli >= 1.45 vendors botocore
    from awscli.botocore.config import Config
except ImportError:
    from botocore import session as boto_session
    from botocore.config import Config
out, count, endpoint, bucket, prefix, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
s3 = boto_session.get_session().create_client(
    "s3", endpoint_url=endpoint, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
for size in sizes:
    with open(f"{out}/s{size}.paths", "w") as f:
        for i in range(count):
            url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": f"{prefix}/s{size}/{i}"}, ExpiresIn=7200)
            u = urllib.parse.urlsplit(url)
            f.write(f"{u.path}?{u.query}\n")
EOF
nginx_port=$(free_port)
mkdir -p "$scratch/nginx/tmp"
render "$here/s3-proxy.conf.in" "$scratch/nginx/nginx.conf" USER="$(user_line)" DIR="$scratch/nginx" \
    LOGS="$RESULTS_DIR" PORT="$nginx_port" S3_HOSTPORT="$s3_hostport"
show nginx -c "$scratch/nginx/nginx.conf" -p "$scratch/nginx" -g 'daemon off;'
nginx -c "$scratch/nginx/nginx.conf" -p "$scratch/nginx" -e "$RESULTS_DIR/s3-proxy-error.log" -g 'daemon off;' &
nginx_pid=$!
nginx_url=http://127.0.0.1:$nginx_port
wait_http "$nginx_url$(head -1 "$scratch/s$first_size.paths")" "$nginx_pid"
for size in $SIZES; do
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$nginx_url$(shuf -n 1 "$scratch/s$size.paths")")
    [[ $got == "200 $size" ]] || check_failed "nginx: a sampled s$size object answered $got"
    echo "    s$size through nginx: $got"
done

# Requests/s, alternating who goes first each round.
run sync
for ((r = 1; r <= ROUNDS; r++)); do
    order=(ours nginx)
    ((r % 2)) || order=(nginx ours)
    for size in $SIZES; do
        for who in "${order[@]}"; do
            say "s$size: $who (round $r)"
            measure_busy
            ((busy_pct < 10)) || echo "WARNING: the machine was ${busy_pct}% busy before this run" >&2
            out=$RESULTS_DIR/s$size-$who-r$r.txt
            before=$(origin_requests)
            if [[ $who == ours ]]; then
                show wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s -H "Host: $ZONE" -s "$repo/bench/proxy/random.lua" "$ours_url" -- "/s$size/" "$COUNT"
                wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s -H "Host: $ZONE" -s "$repo/bench/proxy/random.lua" "$ours_url" -- "/s$size/" "$COUNT" >"$out"
            else
                show wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s -s "$here/paths.lua" "$nginx_url" -- "$scratch/s$size.paths"
                wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s -s "$here/paths.lua" "$nginx_url" -- "$scratch/s$size.paths" >"$out"
            fi
            cat "$out"
            (($(origin_requests) == before)) || check_failed "s$size $who r$r: requests reached the origin"
            if grep -qE '^  (Non-2xx|Socket errors)' "$out"; then
                check_failed "s$size $who r$r: $(grep -E '^  (Non-2xx|Socket errors)' "$out" | xargs)"
            fi
            record "s$size" "$who" "$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
        done
    done
done

{
    echo
    echo "| objects | nginx → S3, req/s | ours, reserve hits from S3, req/s | ours/nginx (per round) |"
    echo "|---|---:|---:|---:|"
    for size in $SIZES; do
        n=$(median "s$size" nginx) o=$(median "s$size" ours)
        rounds=$(paste -d/ <(awk -F'\t' -v k="s$size" '$1 == k && $2 == "ours" { print $3 }' "$RESULTS_DIR/results.tsv") \
            <(awk -F'\t' -v k="s$size" '$1 == k && $2 == "nginx" { print $3 }' "$RESULTS_DIR/results.tsv") |
            awk -F/ '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / $2 }')
        printf '| %d × %d B | %.0f | %.0f | %.2f× (%s) |\n' "$COUNT" "$size" "$n" "$o" "$(echo "$o / $n" | bc -l)" "$rounds"
    done
    ((${#failed_checks[@]} == 0)) || printf 'CHECK FAILED: %s\n' "${failed_checks[@]}"
} | tee "$RESULTS_DIR/summary.md"
((${#failed_checks[@]} == 0))
