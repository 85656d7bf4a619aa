#!/usr/bin/env bash
# Lints template.yaml offline: cfn-lint, then `sam validate --lint` (the SAM transform, then
# cfn-lint on its output). Run by .ci/run and `make lint`.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_deploy_venv
cd "$deploy_root"
cfn-lint template.yaml
# The SAM translator wants credentials to exist; it never uses them to validate.
AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-offline} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-offline} \
  sam validate --lint --template-file template.yaml --region "$AWS_DEFAULT_REGION"
