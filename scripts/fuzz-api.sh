#!/usr/bin/env bash
# Fuzz the HTTP API against its own OpenAPI document with schemathesis (installed by
# scripts/provision.sh): every check (`--checks all`), DWR_FUZZ_EXAMPLES (60) examples per
# operation, twice: against a server without an API token, then against one with a token
# (sent with -H 'Authorization: Bearer ...'). Any failure fails the script.
#
#   scripts/fuzz-api.sh [extra args for `st run`, e.g. --seed 1]
#
# The server is `target/debug/dwr dev --fake-runtime` (built here) on 127.0.0.1 and a free
# port: the in-memory store and one executor whose containers are fake, so no Docker is
# needed, nothing is pulled and the jobs the fuzzer submits end at once (a followed log
# ends with its job). Nothing leaves the loopback interface. Used by scripts/test.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/fuzz-env.sh
. scripts/fuzz-env.sh

EXAMPLES="${DWR_FUZZ_EXAMPLES:-60}"
START_WAIT_S=30

say() { echo "fuzz-api: $*"; }
die() {
    echo "fuzz-api: error: $*" >&2
    exit 1
}

cmp -s "$FUZZ_REQUIREMENTS" "$FUZZ_STAMP" && [ -x "$DWR_VENV/bin/st" ] ||
    die "schemathesis is not installed in $DWR_VENV (or not the version of $FUZZ_REQUIREMENTS); run scripts/provision.sh"

say "building target/debug/dwr"
cargo build --quiet -p dwr-server --bin dwr
dwr="$PWD/target/debug/dwr"
# The hooks and the configuration of the run (why each exception is made is said there).
fuzz_dir="$PWD/scripts/fuzz"

work="$(mktemp -d)"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts `dwr dev --fake-runtime` with token $1 (empty: none); sets $server_pid and $url.
start_server() {
    local token="$1" port log
    port="$(free_port)"
    log="$work/dev-$port.out"
    env -u REDIS_URL -u REDIS_HOST DWR_API_TOKEN="$token" \
        "$dwr" dev --fake-runtime --api-host 127.0.0.1 --api-port "$port" \
        --executor-ip 127.0.0.1 --executor-id fuzz --log-dir "$work" >"$log" 2>&1 &
    server_pid=$!
    url="http://127.0.0.1:$port"
    local deadline=$((SECONDS + START_WAIT_S))
    until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$url/health" >/dev/null 2>&1; do
        if ! kill -0 "$server_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            cat "$log" >&2
            die "the server did not answer on $url within ${START_WAIT_S}s"
        fi
        sleep 0.2
    done
}

# Runs schemathesis against $url; the remaining arguments go to `st run`. Every check but
# use_after_free: DELETE /jobs/{job_id} (the only DELETE) aborts a job, it does not delete it,
# and the aborted job stays readable on purpose (the original system's API). The check is left
# out here because `--checks all` would turn it back on over the configuration file.
fuzz() {
    (cd "$work" && SCHEMATHESIS_HOOKS="$fuzz_dir/hooks.py" "$DWR_VENV/bin/st" \
        --config-file "$fuzz_dir/schemathesis.toml" --no-color run "$url/openapi.json" \
        --checks all --exclude-checks use_after_free --max-examples "$EXAMPLES" \
        --generation-database none "$@")
}

status=0

say "without an API token"
start_server ""
fuzz "$@" || status=1
stop_server

say "with an API token"
token="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
start_server "$token"
fuzz -H "Authorization: Bearer $token" "$@" || status=1
stop_server

if [ "$status" -ne 0 ]; then
    die "schemathesis found failures (see above)"
fi
say "no failures"
