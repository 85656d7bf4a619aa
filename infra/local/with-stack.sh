#!/usr/bin/env bash
# `with-stack.sh NAME COMMAND...`: a fresh private stack NAME, COMMAND run in its environment
# from the repository root, and the stack stopped and deleted afterwards, whatever happened.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
stack="$root/infra/local/stack.sh"
name=$1
shift
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}

# Leftovers of an interrupted run would otherwise be reused.
"$stack" down "$name" --purge >/dev/null 2>&1 || true
trap '"$stack" down "$name" --purge' EXIT
"$stack" up "$name"

set -a
# shellcheck disable=SC1090
source "$root/.local/$name/env"
set +a

cd "$root"
"$@"
