#!/usr/bin/env bash
# Provision a Debian host for dwr: Docker engine, the offline test image, redis-server,
# faketime (for the clock-skew tests), Chromium and chromedriver (the dashboard's browser
# tests), and the API fuzzer (schemathesis from PyPI, in a
# virtualenv; see scripts/fuzz-env.sh).
#
#   scripts/provision.sh                everything (used by scripts/test.sh)
#   scripts/provision.sh --docker-only  only the Docker engine and the test image (used by `dwr dev`)
#
# Idempotent: each step checks first and does nothing when its part is already there.
# See DESIGN.md, "The test host".
set -euo pipefail

IMAGE="dwr-test/busybox:latest"
DOCKERD_LOG="/var/log/dwr-dockerd.log"
DOCKER_WAIT_S=60
APPLETS="sh echo sleep cat yes head ls env printf true false dd tail wc grep seq kill"

say() { echo "provision: $*"; }
die() {
    echo "provision: error: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 [--docker-only]" >&2
    exit 2
}

# shellcheck source=scripts/fuzz-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/fuzz-env.sh"

docker_only=0
for arg in "$@"; do
    case "$arg" in
    --docker-only) docker_only=1 ;;
    -h | --help) usage ;;
    *)
        echo "provision: unknown argument: $arg" >&2
        usage
        ;;
    esac
done

# --- what is missing -------------------------------------------------------------------------

# A statically linked busybox, as installed by busybox-static (prints its path).
static_busybox() {
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        # ldd fails ("not a dynamic executable") on a static binary.
        if [ -x "$b" ] && ! LC_ALL=C ldd "$b" >/dev/null 2>&1; then
            echo "$b"
            return 0
        fi
    done
    return 1
}

# The dockerd binary (prints its path); /usr/sbin is not on a non-root user's PATH.
find_dockerd() {
    command -v dockerd 2>/dev/null && return 0
    local d
    for d in /usr/sbin/dockerd /usr/bin/dockerd; do
        if [ -x "$d" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

docker_up() { docker info >/dev/null 2>&1; }
have_image() { docker image inspect "$IMAGE" >/dev/null 2>&1; }

missing=()
if ! docker_up && { ! command -v docker >/dev/null 2>&1 || ! find_dockerd >/dev/null; }; then
    missing+=(docker.io)
fi
# The image needs busybox only when it is not built yet.
if ! static_busybox >/dev/null && ! { docker_up && have_image; }; then
    missing+=(busybox-static)
fi
if [ "$docker_only" -eq 0 ]; then
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    # The clock-skew tests run executors under faketime (LD_PRELOAD), five minutes off.
    command -v faketime >/dev/null 2>&1 || missing+=(faketime)
    # The API fuzzer's virtualenv (Debian's python3 leaves venv and ensurepip to this package).
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    # The dashboard's browser tests drive Debian's Chromium through WebDriver.
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi

# --- install packages ------------------------------------------------------------------------

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        why="not root"
        command -v apt-get >/dev/null 2>&1 || why="no apt-get (not Debian)"
        echo "provision: cannot install missing packages ($why): ${missing[*]}" >&2
        echo "provision: on Debian/Ubuntu, as root, run:" >&2
        echo "    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
        echo "provision: elsewhere install the equivalents (Docker engine, a static busybox, redis-server) and rerun" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Docker engine ---------------------------------------------------------------------------

if docker_up; then
    say "docker engine is up"
else
    if [ "$(id -u)" -ne 0 ]; then
        die "no Docker engine answers and starting one needs root; as root run: $0 --docker-only (or start dockerd yourself and make sure your user can reach /var/run/docker.sock)"
    fi
    say "starting dockerd (log: $DOCKERD_LOG)"
    # A daemon killed earlier leaves its pid file behind, and dockerd then refuses to start.
    rm -f /var/run/docker.pid
    # setsid + nohup: the daemon outlives this script and its terminal.
    dockerd="$(find_dockerd)"
    setsid nohup "$dockerd" --bridge=none --iptables=false --ip6tables=false \
        >>"$DOCKERD_LOG" 2>&1 </dev/null &
    deadline=$((SECONDS + DOCKER_WAIT_S))
    until docker_up; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "provision: dockerd did not answer within ${DOCKER_WAIT_S}s; last lines of $DOCKERD_LOG:" >&2
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    say "docker engine is up"
fi

# --- offline test image ----------------------------------------------------------------------

if have_image; then
    say "image $IMAGE is present"
else
    busybox="$(static_busybox)" || die "no static busybox at /bin/busybox or /usr/bin/busybox (install busybox-static)"
    say "building $IMAGE from $busybox"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/root/bin"
    cp "$busybox" "$tmp/root/bin/busybox"
    for a in $APPLETS; do
        ln -s busybox "$tmp/root/bin/$a"
    done
    tar -C "$tmp/root" -c . | docker import - "$IMAGE" >/dev/null
    rm -rf "$tmp"
    trap - EXIT
    say "image $IMAGE built"
fi

# --- redis -----------------------------------------------------------------------------------

if [ "$docker_only" -eq 0 ]; then
    # Tests start their own redis-server on a free loopback port; only the binary is needed.
    command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing"
    say "redis-server is present ($(command -v redis-server))"
    command -v faketime >/dev/null 2>&1 || die "faketime is still missing"
    say "faketime is present ($(command -v faketime))"
    command -v chromedriver >/dev/null 2>&1 || die "chromedriver is still missing"
    say "chromium and chromedriver are present ($(chromedriver --version 2>/dev/null | head -1))"
fi

# --- the API fuzzer --------------------------------------------------------------------------

if [ "$docker_only" -eq 0 ]; then
    if cmp -s "$FUZZ_REQUIREMENTS" "$FUZZ_STAMP" && [ -x "$DWR_VENV/bin/st" ]; then
        say "schemathesis is present ($DWR_VENV)"
    else
        say "installing schemathesis into $DWR_VENV (from PyPI; scripts/fuzz/requirements.txt)"
        python3 -m venv "$DWR_VENV" || die "cannot create the virtualenv $DWR_VENV"
        "$DWR_VENV/bin/pip" install --quiet --disable-pip-version-check \
            --requirement "$FUZZ_REQUIREMENTS" || die "installing schemathesis failed"
        cp "$FUZZ_REQUIREMENTS" "$FUZZ_STAMP"
        say "schemathesis installed ($("$DWR_VENV/bin/st" --version))"
    fi
fi

say "ready"
