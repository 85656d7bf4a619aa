#!/usr/bin/env bash
# `make test`: every test of the workspace against a fresh private stack ("test"), then the
# secrets scan over everything the tests left behind: their logs and their workers' logs, every
# database of the cluster and every task table, against every secret the simulators issued.
# Arguments go to the test runner (`make soak` passes a filter); a run without any also runs
# the web app's tests (infra/local/web.sh test), before the scan, which covers their logs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" != --in-stack ]; then
  exec "$here/with-stack.sh" test "$here/test.sh" --in-stack "$@"
fi
shift

# Inside the stack's directory, so the stack's teardown deletes them (the ledger holds the
# simulators' secrets in the clear: they are fakes, but nothing should keep them).
export TASTYSYNC_SUITE_LOGS="$PWD/.local/test/suite-logs"
export TASTYSYNC_ISSUED_SECRETS="$PWD/.local/test/issued-secrets"
mkdir -p "$TASTYSYNC_SUITE_LOGS"

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
if [ "$#" -eq 0 ]; then
  "$here/web.sh" test || status=$?
fi
cargo run -q -p tastysync-tests --bin tastysync-scan-secrets || status=$?
exit "$status"
