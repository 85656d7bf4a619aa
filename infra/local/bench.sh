#!/usr/bin/env bash
# `make bench`: release builds, then the benchmark table against a private stack ("bench").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}
# Every function as well as the bench: the table reports each binary's size and start-up time.
packages=(-p tastysync-tests)
for manifest in functions/*/Cargo.toml; do
  packages+=(-p "$(basename "$(dirname "$manifest")")")
done
cargo build --release -q --bins "${packages[@]}"
exec "$here/with-stack.sh" bench "$CARGO_TARGET_DIR/release/tastysync-bench"
