#!/usr/bin/env bash
# Run the product: bring up the Docker engine and the offline image, then `dwr dev`
# (scheduler + one executor in one process, in-memory store, API on SCHEDULER_API_PORT=8000).
#
#   scripts/dev.sh [extra args for `dwr dev`]
#
# Stop it with Ctrl-C. Submit work from another terminal (`dwr submit ...`, curl; see README.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh --docker-only

exec cargo run --release -p dwr-server --bin dwr -- dev "$@"
