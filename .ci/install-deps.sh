#!/usr/bin/env bash
# Installs what the tests and benchmarks need, and nothing when it is already there:
#   Debian: postfix (for smtp-source, smtp-sink and private Postfix instances used as a
#           reference and an interop peer), swaks, procps;
#   PyPI:   this checkout, editable, with its test extras.
# Idempotent and quiet; any failure stops the script with a message on stderr.
# Set MAILYARD_FORCE_PIP=1 to reinstall the Python package even when it imports fine.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(postfix swaks procps)

die() { echo "install-deps: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

missing_debian_packages() {
    local pkg
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            echo "$pkg"
        fi
    done
}

install_debian() {
    command -v dpkg-query >/dev/null 2>&1 || die "not a Debian system (dpkg-query missing)"
    local missing
    missing=$(missing_debian_packages | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0
    echo "install-deps: installing Debian packages: $missing" >&2
    # Without a preseeded answer the postfix package asks an interactive question.
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when they are absent or a first attempt fails.
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
        as_root apt-get update -qq || die "apt-get update failed"
    fi
    # shellcheck disable=SC2086
    if ! as_root apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
        as_root apt-get update -qq || die "apt-get update failed"
        # shellcheck disable=SC2086
        as_root apt-get install -y -qq --no-install-recommends $missing >/dev/null \
            || die "apt-get install $missing failed"
    fi
    missing=$(missing_debian_packages | tr '\n' ' ')
    [ -z "${missing// /}" ] || die "still missing after install: $missing"
}

python_ready() {
    # The checkout is importable (editable install pointing here) with the test extras.
    python3 - "$PWD/src" <<'EOF' >/dev/null 2>&1
import os, sys
import mailyard, pytest, pytest_timeout, hypothesis  # noqa: F401
want = os.path.realpath(sys.argv[1])
sys.exit(0 if os.path.realpath(mailyard.__file__).startswith(want + os.sep) else 1)
EOF
}

install_python() {
    if [ "${MAILYARD_FORCE_PIP:-0}" != 1 ] && python_ready && command -v mailyard >/dev/null 2>&1; then
        return 0
    fi
    echo "install-deps: pip install -e '.[test]'" >&2
    python3 -m pip install -q --disable-pip-version-check -e '.[test]' \
        || die "pip install -e '.[test]' failed"
    python_ready || die "mailyard is not importable from $PWD/src after pip install"
}

install_debian
install_python
for tool in postfix postconf smtp-source smtp-sink swaks; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool not found after install"
done
