#!/usr/bin/env bash
# The output-flood proof at full size: two jobs printing 1 GiB each (one with no newline,
# one in lines of 1 MiB) through a real executor, Redis and Docker; prints the executor's
# peak RSS, Redis's growth and the slowest /health answer (see dwr-server/tests/floods.rs,
# which the test command runs at 256 MiB).
#
#   scripts/log-flood.sh [MiB per flood, default 1024]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/provision.sh
DWR_REQUIRE_SERVICES=1 DWR_FLOOD_MIB="${1:-1024}" \
    cargo test -p dwr-server --test floods -- --nocapture
