# Where the API fuzzer lives, for scripts/provision.sh (which installs it) and
# scripts/fuzz-api.sh (which runs it). Sourced, not run.
#
# DWR_VENV: a Python virtualenv holding schemathesis and its dependencies at the versions of
# scripts/fuzz/requirements.txt: /opt/dwr-venv as root (it outlives a fresh clone and
# `cargo clean`), else target/dwr-venv in the repo (ignored by git).
FUZZ_REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fuzz/requirements.txt"
if [ -z "${DWR_VENV:-}" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        DWR_VENV=/opt/dwr-venv
    else
        DWR_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/dwr-venv"
    fi
fi
# The copy of the requirements the virtualenv was last built from.
FUZZ_STAMP="$DWR_VENV/dwr-requirements.txt"
