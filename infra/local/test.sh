#!/usr/bin/env bash
# `make test`: every test of the workspace against a fresh private stack ("test").
set -euo pipefail
here=$(dirname "$0")
if cargo nextest --version >/dev/null 2>&1; then
  exec "$here/with-stack.sh" test cargo nextest run --workspace --no-fail-fast "$@"
fi
exec "$here/with-stack.sh" test cargo test --workspace --no-fail-fast "$@"
