# Sourced by the deploy scripts: creates .venv-deploy from requirements.txt when it is missing or
# stale, and puts it first on PATH (so `cargo lambda`, `sam` and `cfn-lint` resolve to it).
deploy_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deploy_venv="$deploy_root/.venv-deploy"

ensure_deploy_venv() {
  local stamp="$deploy_venv/.requirements.sha" want
  want=$(sha256sum "$deploy_root/infra/deploy/requirements.txt" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[deploy] creating the deploy virtualenv (SAM CLI, cfn-lint, cargo-lambda) in .venv-deploy" >&2
    python3 -m venv "$deploy_venv"
    "$deploy_venv/bin/pip" install -q --disable-pip-version-check -r "$deploy_root/infra/deploy/requirements.txt"
    echo "$want" >"$stamp"
  fi
  export PATH="$deploy_venv/bin:$PATH"
  # Offline and quiet: no telemetry, no update checks, and a region for the SAM translator.
  export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1
  export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
}
