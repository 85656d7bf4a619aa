# The commands the README promises. Every target cleans up what it starts.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tastysync-target

.PHONY: demo test soak stack stack-down lint fmt openapi bench package

## The product end to end on a fresh private stack: link a simulated account through the API,
## follow its full sync, add activity, trigger an incremental sync; everything stopped after.
demo:
	infra/local/with-stack.sh demo sh -c '"$$CARGO_TARGET_DIR/debug/tastysync-local" demo'

## Every test against a fresh private stack (Postgres + moto), stopped afterwards.
test:
	infra/local/test.sh

## The slow reliability runs: the crash-consistency test with fifty kills, the fault storm, and
## kills with two accounts' messages in flight under the template's 720 s visibility (ignored by
## `make test`: it waits the visibility out).
soak:
	SOAK_KILLS=50 infra/local/test.sh --run-ignored all \
	  -E 'test(/killed_again_and_again|fault_storm|template_visibility/)' --no-capture

## The dev stack (Postgres, moto, migrated and provisioned: .local/dev/env), the simulator and
## the local gateway on 127.0.0.1:8787 with the worker; prints curl examples with a dev JWT.
stack:
	infra/local/serve.sh

## Stops the dev stack (its data stays in .local/dev; `infra/local/stack.sh down dev --purge` deletes it).
stack-down:
	infra/local/stack.sh down dev

## Formatting, clippy, and template.yaml through cfn-lint and `sam validate --lint` (offline).
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	infra/deploy/lint.sh

fmt:
	cargo fmt --all

## Regenerates openapi.json from the Rust types (a test fails when it is stale).
openapi:
	cargo run -q -p tastysync-local -- openapi > openapi.json

## Benchmarks (release build, private "bench" stack, stopped afterwards); prints a table.
bench:
	infra/local/bench.sh

## Every function as a Lambda zip (build/lambda/<function>/bootstrap.zip) and their sizes:
## arm64 where that Rust target is installed, x86_64 otherwise (PACKAGE_ARCH overrides).
package:
	infra/deploy/package.sh
