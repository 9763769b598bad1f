#!/usr/bin/env bash
# Runs the whole test suite, including conformance with Cloudflare's own Python SDK (cloudflare==5.9.0,
# installed from PyPI into .venv-sdk on first use). Extra arguments go to `cargo test`.
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
exit "$status"
