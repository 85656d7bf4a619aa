#!/usr/bin/env bash
# `make bench`: release builds, a private stack ("bench"), the benchmark table, and the stack
# stopped and deleted afterwards.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
stack="$root/infra/local/stack.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}

"$stack" down bench --purge >/dev/null 2>&1 || true
trap '"$stack" down bench --purge' EXIT
"$stack" up bench
set -a
# shellcheck disable=SC1091
source "$root/.local/bench/env"
set +a

cd "$root"
cargo build --release -q -p sync-worker -p tastysync-tests --bin sync-worker --bin tastysync-bench
"$CARGO_TARGET_DIR/release/tastysync-bench"
