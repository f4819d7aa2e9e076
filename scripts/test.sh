#!/usr/bin/env bash
# Run every test: provision the host, then format check, lints, tests, the API fuzz run, doc
# tests, benches.
#
#   scripts/test.sh [extra args for cargo test]
#
# Tests that need Redis or Docker fail (instead of skipping) when their service is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh

export DWR_REQUIRE_SERVICES=1
export DWR_TEST_IMAGE=dwr-test/busybox:latest

step() { echo "test: $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "dwr-client depends on none of the server's machinery (axum, redis, bollard)"
if cargo tree -p dwr-client -e normal --prefix none | grep -E '^(axum|redis|bollard) '; then
  echo "test: dwr-client must not depend on axum, redis or bollard" >&2
  exit 1
fi

step "cargo test (all targets)"
cargo test --workspace --all-targets "$@"

step "API fuzz run (schemathesis against /openapi.json, without and with a token)"
scripts/fuzz-api.sh

step "cargo test (doc tests)"
cargo test --workspace --doc "$@"

step "cargo bench --no-run"
cargo bench --workspace --no-run

step "all passed"
