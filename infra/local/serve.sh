#!/usr/bin/env bash
# `make stack`: the dev stack (Postgres + moto, kept running), the tastytrade simulator and the
# local gateway in the foreground; Ctrl-C stops the gateway and the simulator, `make stack-down`
# the rest. With TASTYTRADE_REFRESH_TOKEN set, no simulator starts: link your own grant against
# tastytrade's sandbox (or TASTYTRADE_API_URL).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}
"$root/infra/local/stack.sh" up dev
set -a
# shellcheck disable=SC1091
source "$root/.local/dev/env"
set +a
bin="$CARGO_TARGET_DIR/debug"

if [ -z "${TASTYTRADE_REFRESH_TOKEN:-}" ]; then
  "$bin/tastytrade-sim" --accounts 2 --transactions 5000 --orders 1000 >"$root/.local/dev/sim.json" &
  sim=$!
  trap 'kill $sim 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do [ -s "$root/.local/dev/sim.json" ] && break; sleep 0.1; done
  export TASTYTRADE_SANDBOX_URL
  TASTYTRADE_SANDBOX_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$root/.local/dev/sim.json")
  echo "tastytrade simulator on $TASTYTRADE_SANDBOX_URL; link it with the grant in .local/dev/sim.json:"
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(json.dumps({"environment":"sandbox","refresh_token":c["refresh_token"],"client_secret":c["client_secret"]}))' "$root/.local/dev/sim.json"
  echo
elif [ -n "${TASTYTRADE_API_URL:-}" ]; then
  export TASTYTRADE_SANDBOX_URL=$TASTYTRADE_API_URL TASTYTRADE_PRODUCTION_URL=$TASTYTRADE_API_URL
fi
export OAUTH_REDIRECT_URIS=${OAUTH_REDIRECT_URIS:-http://localhost:5173/callback}
"$bin/tastysync-local" gateway "${GATEWAY_ADDR:-127.0.0.1:8787}"
