#!/usr/bin/env bash
# Installs what the tests and benchmarks need, and nothing when it is already there:
#   Debian: opendkim-tools (opendkim-testmsg, the DKIM interop peer) and iproute2;
#           chromium (the report page's browser test, driven by Playwright);
#           postfix (for smtp-source, smtp-sink and private Postfix instances used as a
#           reference and an interop peer), swaks, procps;
# (Mailyard itself and its test extras go into the project's virtual environment:
# scripts/venv.sh.) Postfix is installed with "No configuration" preseeded, so no
# Postfix daemon is set up or started: the tests run private instances of their own.
# On a default Debian it replaces exim4 as the system's MTA package.
# Idempotent and quiet; any failure stops the script with a message on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(postfix swaks procps fetchmail opendkim-tools iproute2 isync chromium)

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
    # No service of the packages installed here may start (policy-rc.d, 101: "action
    # forbidden"); the file is removed again unless it was there before.
    local policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
    fi
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

install_debian
for tool in postfix postconf smtp-source smtp-sink swaks; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool not found after install"
done
