#!/usr/bin/env bash
# `make package`: one `cargo lambda build --release` of every crate under functions/ into
# build/lambda/<function>/bootstrap.zip (template.yaml's CodeUri), then each zip's size.
#
# arm64 when that Rust target is installed (the template's default Architecture), x86_64
# otherwise; PACKAGE_ARCH=arm64|x86_64 chooses. Deploy with the same Architecture parameter.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_deploy_venv
cd "$deploy_root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tastysync-target}

arch=${PACKAGE_ARCH:-}
if [ -z "$arch" ]; then
  if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    arch=arm64
  else
    arch=x86_64
  fi
fi
case "$arch" in
  arm64) flag=--arm64 ;;
  x86_64) flag=--x86-64 ;;
  *) echo "PACKAGE_ARCH must be arm64 or x86_64, not $arch" >&2; exit 2 ;;
esac

packages=()
for manifest in functions/*/Cargo.toml; do
  packages+=(-p "$(basename "$(dirname "$manifest")")")
done
rm -rf build/lambda
cargo lambda build --release "$flag" --output-format zip --lambda-dir build/lambda "${packages[@]}"

echo
echo "Architecture=$arch (pass it to sam deploy: --parameter-overrides Architecture=$arch)"
printf '%-16s %12s %14s\n' function "zip (KiB)" "bootstrap (KiB)"
for zip in build/lambda/*/bootstrap.zip; do
  name=$(basename "$(dirname "$zip")")
  unzipped=$(python3 -c 'import sys, zipfile; print(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist()))' "$zip")
  printf '%-16s %12d %14d\n' "$name" $(( $(stat -c %s "$zip") / 1024 )) $(( unzipped / 1024 ))
done
