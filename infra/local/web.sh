#!/usr/bin/env bash
# The web app (web/) in the local stack.
#
#   web.sh deps                  Debian's chromium when missing; the npm packages when
#                                web/package-lock.json changed since the last install
#   web.sh test                  inside a stack's environment (`make test` runs it): formatting,
#                                typecheck, unit tests, production build, then the browser journey against
#                                a simulator, the local gateway with its worker, and `next start`
#   web.sh serve GATEWAY [PORT]  builds the app and serves it on 127.0.0.1:PORT (3000) against
#                                the local gateway at GATEWAY, signed in with dev tokens
#
# Nothing here downloads a browser: Playwright drives /usr/bin/chromium.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
web="$root/web"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}
export NEXT_TELEMETRY_DISABLED=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
chromium=${CHROMIUM:-/usr/bin/chromium}
# The OAuth client `stack.sh up` provisions for the deployment (tastysync-local provision's
# default); the simulator registers the same, so the code flow works against it.
oauth_client_id=tastysync-local
oauth_client_secret=local-client-secret

log() { printf '[web] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until URL answers at all (any status), or fails after about 60 s.
wait_for() {
  python3 - "$1" <<'PY'
import sys, time, urllib.request, urllib.error
for _ in range(600):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(f"{sys.argv[1]} did not answer")
PY
}

ensure_deps() {
  command -v node >/dev/null || { log "Node.js is required (node and npm on PATH)"; exit 1; }
  if ! cmp -s "$web/package-lock.json" "$web/node_modules/.tastysync-installed-lock"; then
    log "installing the web app's npm packages"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$web/package-lock.json" "$web/node_modules/.tastysync-installed-lock"
  fi
}

ensure_chromium() {
  if [ ! -x "$chromium" ]; then
    log "Chromium missing: installing Debian's chromium package"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  fi
}

build() {
  log "building the app"
  (cd "$web" && node node_modules/next/dist/bin/next build >/dev/null)
}

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# Starts `next start` on PORT against the gateway at GATEWAY; waits until it answers.
start_app() {
  local gateway=$1 port=$2 log_file=$3
  (cd "$web" && TASTYSYNC_API_URL=$gateway exec node node_modules/next/dist/bin/next start \
    --hostname 127.0.0.1 --port "$port") >"$log_file" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$port/settings/accounts"
}

run_test() {
  ensure_deps
  ensure_chromium
  (cd "$web" && node node_modules/prettier/bin/prettier.cjs --check --log-level warn .)
  (cd "$web" && node node_modules/typescript/bin/tsc --noEmit)
  (cd "$web" && node node_modules/vitest/vitest.mjs run)
  build

  local logs=${TASTYSYNC_SUITE_LOGS:-$root/.local/web-logs} bin="$CARGO_TARGET_DIR/debug"
  mkdir -p "$logs"
  scratch=$(mktemp -d)
  trap 'stop_all; rm -rf "$scratch"' EXIT

  "$bin/tastytrade-sim" --accounts 2 --transactions 400 --orders 120 --years 2 \
    --client-id "$oauth_client_id" --client-secret "$oauth_client_secret" \
    >"$scratch/sim.json" 2>"$logs/web-sim.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -s "$scratch/sim.json" ] && break; sleep 0.1; done
  local sim_url web_port gateway_port
  sim_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$scratch/sim.json")
  web_port=$(free_port)
  gateway_port=$(free_port)
  local web_url="http://127.0.0.1:$web_port" gateway="http://127.0.0.1:$gateway_port"

  # A short cooldown, so the journey sees the countdown end; no schedule ticks in between.
  TASTYTRADE_SANDBOX_URL=$sim_url TASTYTRADE_SANDBOX_AUTHORIZE_URL=$sim_url/auth.html \
    OAUTH_REDIRECT_URIS=$web_url/callback CORS_ALLOW_ORIGINS=$web_url \
    SYNC_TRIGGER_COOLDOWN_SECONDS=15 LOCAL_SCHEDULE_SECONDS=0 RUST_LOG=${RUST_LOG:-info} \
    "$bin/tastysync-local" gateway "127.0.0.1:$gateway_port" >"$logs/web-gateway.log" 2>&1 &
  pids+=($!)
  wait_for "$gateway/__local/dev-token"
  # A user of its own, so that a rerun on a kept stack starts from no accounts too.
  TASTYSYNC_DEV_USER="web-journey-$(date +%s)-$$" start_app "$gateway" "$web_port" "$logs/web-next.log"

  log "browser journey on $web_url (gateway $gateway, simulator $sim_url)"
  (cd "$web" && WEB_URL=$web_url SIM_JSON=$scratch/sim.json CHROMIUM=$chromium \
    SCREENSHOT_DIR="$root/build/web-screenshots" node node_modules/@playwright/test/cli.js test)
  log "screenshots in build/web-screenshots/"
}

run_serve() {
  local gateway=${1:?usage: web.sh serve GATEWAY [PORT]} port=${2:-3000}
  ensure_deps
  build
  trap stop_all EXIT
  start_app "$gateway" "$port" "$root/.local/dev/web.log"
  log "the app on http://127.0.0.1:$port (signed in as dev-user with the gateway's dev token)"
  wait
}

case "${1:-}" in
  deps) ensure_deps; ensure_chromium ;;
  test) run_test ;;
  serve) shift; run_serve "$@" ;;
  *) echo "usage: web.sh deps | test | serve GATEWAY [PORT]" >&2; exit 2 ;;
esac
