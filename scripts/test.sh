#!/usr/bin/env bash
# Runs the whole test suite: `cargo test` (which includes conformance with Cloudflare's own Python SDK,
# cloudflare==5.9.0, installed from PyPI into .venv-sdk on first use), then the public HTTP cache test suite
# against the proxy in both configurations (scripts/cache-tests/run.sh; needs node and npm, skipped with a
# warning when they are missing, unless CI=true; CACHE_TESTS=0 skips it). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-sdk
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("cloudflare") == "5.9.0"' 2>/dev/null; then
    echo "setting up $venv with cloudflare==5.9.0 ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check cloudflare==5.9.0
fi
export CACHE_RESERVE_SDK_PYTHON="$PWD/$venv/bin/python"

# One summary line for the whole run, over every test binary's results.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
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
