#!/usr/bin/env bash
# `make bench`: release builds, then the benchmark table against a private stack ("bench").
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}
cargo build --release -q -p sync-worker -p tastysync-tests --bin sync-worker --bin tastysync-bench
exec "$(dirname "$0")/with-stack.sh" bench "$CARGO_TARGET_DIR/release/tastysync-bench"
