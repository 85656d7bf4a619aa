#!/usr/bin/env bash
# The local stack: a private Postgres cluster and moto server on loopback, migrated and
# provisioned as the deployment is.
#
#   stack.sh up   [name]   start (or keep) the stack; writes .local/<name>/env
#   stack.sh down [name]   stop what `up` started, by pid; --purge also deletes its data
#   stack.sh env  [name]   print the env file
#   stack.sh pg   [name]   only the Postgres cluster (what `up` starts first); prints its port
#
# Both commands are idempotent. Each stack has its own folder under .local/ and its own free
# ports, so `make test` (stack "test") never touches the dev stack ("dev").
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
command=${1:-}
name=${2:-dev}
state="$root/.local/$name"
venv="$root/.venv"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}

log() { printf '[stack:%s] %s\n' "$name" "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres_binaries() {
  if [ -z "$(pg_bindir)" ] || [ ! -x "$(pg_bindir)/initdb" ]; then
    log "Postgres server binaries missing: installing Debian's postgresql package"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
  fi
}

ensure_venv() {
  local stamp="$venv/.requirements.sha"
  local want
  want=$(sha256sum "$root/infra/local/requirements.txt" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  log "creating the Python virtualenv (moto server) in .venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/infra/local/requirements.txt"
  echo "$want" >"$stamp"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Postgres refuses to run as root; on machines where we are root it runs as `postgres`.
pg_user_run() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The cluster's data lives in the stack's folder, except when we are root: then Postgres runs as
# `postgres`, who may not reach the checkout (a clone under /root is behind a 0700 directory),
# so the data goes to a folder of its own under /var/tmp that `postgres` owns, named after the
# stack's folder, and `down --purge` deletes it too.
pgdata_dir() {
  if [ "$(id -u)" -eq 0 ]; then
    echo "/var/tmp/tastysync-pg/$(printf '%s' "$state" | md5sum | cut -c1-16)/pgdata"
  else
    echo "$state/pgdata"
  fi
}

start_postgres() {
  local bin pgdata port
  pgdata=$(pgdata_dir)
  bin=$(pg_bindir)
  if [ -f "$state/pg.port" ] && pg_user_run "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    return
  fi
  mkdir -p "$state"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres: "$(dirname "$pgdata")" "$pgdata"
      chmod 700 "$(dirname "$pgdata")"
    fi
    pg_user_run "$bin/initdb" -D "$pgdata" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
  fi
  port=$(free_port)
  echo "$port" >"$state/pg.port"
  # Loopback TCP only (no socket files), fsync off: this cluster holds nothing worth a crash
  # guarantee, and tests create many databases.
  pg_user_run "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -o \
    "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
  log "postgres on 127.0.0.1:$port"
}

stop_postgres() {
  local bin pgdata
  pgdata=$(pgdata_dir)
  bin=$(pg_bindir)
  [ -n "$bin" ] && [ -f "$pgdata/PG_VERSION" ] || return 0
  if pg_user_run "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    pg_user_run "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
    log "postgres stopped"
  fi
}

start_moto() {
  local port
  if alive "$state/moto.pid"; then return; fi
  port=$(free_port)
  echo "$port" >"$state/moto.port"
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then
      log "moto on 127.0.0.1:$port"
      return
    fi
    sleep 0.2
  done
  log "moto did not come up; see $state/moto.log"
  exit 1
}

stop_moto() {
  if alive "$state/moto.pid"; then
    local pid
    pid=$(cat "$state/moto.pid")
    kill "$pid"
    # Wait for it, so that "down" means nothing is left running when it returns.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "moto stopped"
  fi
  rm -f "$state/moto.pid"
}

write_env() {
  local pg_port moto_port
  pg_port=$(cat "$state/pg.port")
  moto_port=$(cat "$state/moto.port")
  {
    echo "# The $name stack; source this file to point the functions and tests at it."
    echo "DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/tastysync"
    echo "TASTYSYNC_PG_ADMIN_URL=postgres://postgres@127.0.0.1:$pg_port/postgres"
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port"
    echo "AWS_REGION=us-east-1"
    # moto accepts any credentials; these keep the SDK from searching for real ones.
    echo "AWS_ACCESS_KEY_ID=testing"
    echo "AWS_SECRET_ACCESS_KEY=testing"
  } >"$state/env.tmp"
}

up() {
  ensure_postgres_binaries
  ensure_venv
  start_postgres
  start_moto
  write_env
  set -a; source "$state/env.tmp"; set +a
  pg_user_run "$(pg_bindir)/psql" -qAt -h 127.0.0.1 -p "$(cat "$state/pg.port")" -U postgres -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = 'tastysync'" | grep -q 1 ||
    pg_user_run "$(pg_bindir)/createdb" -h 127.0.0.1 -p "$(cat "$state/pg.port")" -U postgres tastysync
  # The whole workspace, so features unify as in `cargo test --workspace` and neither build
  # invalidates the other's artifacts.
  # Not quiet: on a fresh machine the first build takes minutes, and a silent terminal looks hung.
  log "building the functions (the first build on a fresh machine takes several minutes)"
  cargo build --workspace --bins
  "$CARGO_TARGET_DIR/debug/migrate" >/dev/null
  "$CARGO_TARGET_DIR/debug/tastysync-local" provision "$name-" >>"$state/env.tmp"
  mv "$state/env.tmp" "$state/env"
  log "up; environment in .local/$name/env:"
  # The emulator's secret keys stay in the file: a log is no place for one, even a throwaway.
  sed -E 's/^(AWS_SECRET_ACCESS_KEY=|TASTYSYNC_IDENTITY_[A-Z_]+=[^:]*:).*/\1(see the file)/; s/^/  /' \
    "$state/env" >&2
}

down() {
  stop_moto
  stop_postgres
  if [ "${purge:-}" = 1 ]; then
    [ "$(pgdata_dir)" = "$state/pgdata" ] || rm -rf "$(dirname "$(pgdata_dir)")"
    rm -rf "$state"
    log "purged .local/$name"
  fi
}

case "$command" in
  up) up ;;
  down)
    [ "${3:-}" = "--purge" ] && purge=1
    down
    ;;
  env) cat "$state/env" ;;
  pg)
    ensure_postgres_binaries
    start_postgres
    cat "$state/pg.port"
    ;;
  *)
    echo "usage: $0 up|down|env|pg [name] [--purge]" >&2
    exit 2
    ;;
esac
