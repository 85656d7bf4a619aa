# The commands the README promises. Every target cleans up what it starts.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tastysync-target

.PHONY: test stack stack-down lint fmt openapi bench

## Every test against a fresh private stack (Postgres + moto), stopped afterwards.
test:
	infra/local/test.sh

## The local stack for development: Postgres, moto, migrated and provisioned (.local/dev/env).
stack:
	infra/local/stack.sh up dev

## Stops the dev stack (its data stays in .local/dev; `infra/local/stack.sh down dev --purge` deletes it).
stack-down:
	infra/local/stack.sh down dev

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

## Regenerates openapi.json from the Rust types (a test fails when it is stale).
openapi:
	cargo run -q -p tastysync-local -- openapi > openapi.json

## Benchmarks (release build, private "bench" stack, stopped afterwards); prints a table.
bench:
	infra/local/bench.sh
