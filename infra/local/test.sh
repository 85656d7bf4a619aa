#!/usr/bin/env bash
# `make test`: a fresh private stack ("test"), every test of the workspace against it, and the
# stack stopped and deleted afterwards, whatever happened.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
stack="$root/infra/local/stack.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}

# Leftovers of an interrupted run would otherwise be reused.
"$stack" down test --purge >/dev/null 2>&1 || true
trap '"$stack" down test --purge' EXIT
"$stack" up test

set -a
# shellcheck disable=SC1091
source "$root/.local/test/env"
set +a

cd "$root"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
