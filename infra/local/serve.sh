#!/usr/bin/env bash
# `make stack`: the dev stack (Postgres + moto, kept running), the tastytrade simulator, the
# account streamer (logging to .local/dev/streamer.log), the web
# app on 127.0.0.1:3000 (WEB_PORT; STACK_WEB=0 leaves it out) and the local gateway in the
# foreground; Ctrl-C stops the gateway, the app and the simulator, `make stack-down` the rest. With TASTYTRADE_REFRESH_TOKEN set, no simulator starts: link your own grant against
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
children=()
trap 'for pid in "${children[@]}"; do kill -- "$pid" 2>/dev/null || true; done' EXIT

if [ -z "${TASTYTRADE_REFRESH_TOKEN:-}" ]; then
  # The simulator registers the stack's OAuth client, so "Connect tastytrade" works against it.
  "$bin/tastytrade-sim" --accounts 2 --transactions 5000 --orders 1000 \
    --client-id tastysync-local --client-secret local-client-secret >"$root/.local/dev/sim.json" &
  children+=($!)
  for _ in $(seq 1 50); do [ -s "$root/.local/dev/sim.json" ] && break; sleep 0.1; done
  export TASTYTRADE_SANDBOX_URL TASTYTRADE_SANDBOX_AUTHORIZE_URL TASTYTRADE_SANDBOX_STREAMER_URL
  TASTYTRADE_SANDBOX_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$root/.local/dev/sim.json")
  TASTYTRADE_SANDBOX_STREAMER_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["streamer_url"])' "$root/.local/dev/sim.json")
  TASTYTRADE_SANDBOX_AUTHORIZE_URL=$TASTYTRADE_SANDBOX_URL/auth.html
  echo "tastytrade simulator on $TASTYTRADE_SANDBOX_URL; link it with the grant in .local/dev/sim.json:"
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(json.dumps({"environment":"sandbox","refresh_token":c["refresh_token"],"client_secret":c["client_secret"]}))' "$root/.local/dev/sim.json"
  echo
elif [ -n "${TASTYTRADE_API_URL:-}" ]; then
  export TASTYTRADE_SANDBOX_URL=$TASTYTRADE_API_URL TASTYTRADE_PRODUCTION_URL=$TASTYTRADE_API_URL
fi
gateway_addr=${GATEWAY_ADDR:-127.0.0.1:8787}
web_port=${WEB_PORT:-3000}
web_origins="http://127.0.0.1:$web_port,http://localhost:$web_port"
export OAUTH_REDIRECT_URIS=${OAUTH_REDIRECT_URIS:-http://127.0.0.1:$web_port/callback,http://localhost:$web_port/callback}
export CORS_ALLOW_ORIGINS=${CORS_ALLOW_ORIGINS:-$web_origins}
# The account streamer, as the schedule would run it: it serves the linked grants' sockets and
# looks for new links every STREAMER_TICK_SECONDS (its invocations end every five minutes here).
STREAMER_TICK_SECONDS=${STREAMER_TICK_SECONDS:-10} STREAMER_INVOCATION_SECONDS=300 \
  "$bin/account-streamer" >"$root/.local/dev/streamer.log" 2>&1 &
children+=($!)
if [ "${STACK_WEB:-1}" != 0 ]; then
  # Its own process group, so that stopping it stops `next start` too.
  setsid "$root/infra/local/web.sh" serve "http://$gateway_addr" "$web_port" &
  children+=(-$!)
fi
"$bin/tastysync-local" gateway "$gateway_addr"
