# Sourced by scripts/serve and scripts/test: creates (once) and reuses the project's
# virtual environment in .venv, so that nothing is installed into the system Python
# (Debian and Ubuntu refuse that: PEP 668, "externally-managed-environment").
# Needs only python3 (3.11 or newer) with its venv module: on Debian/Ubuntu the
# package python3-venv.
# Sets VENV_PY to the environment's interpreter.

venv_die() { echo "mailyard: $*" >&2; exit 2; }

VENV_DIR=${MAILYARD_VENV:-"$PWD/.venv"}
PYTHON=${PYTHON:-python3}

venv_ensure() {  # venv_ensure EXTRAS ("" or "[test]")
    local extras=$1
    command -v "$PYTHON" >/dev/null 2>&1 || venv_die "python3 not found: install Python 3.11 or newer (Debian/Ubuntu: apt install python3 python3-venv)"
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || venv_die "Python 3.11 or newer is needed; $("$PYTHON" -V 2>&1) found"
    if [ ! -x "$VENV_DIR/bin/python" ] || ! "$VENV_DIR/bin/python" -c 'import pip' >/dev/null 2>&1; then
        rm -rf "$VENV_DIR"
        "$PYTHON" -m venv "$VENV_DIR" >/dev/null 2>&1 \
            || venv_die "cannot create a virtual environment in $VENV_DIR: install Python's venv module (Debian/Ubuntu: apt install python3-venv)"
    fi
    VENV_PY="$VENV_DIR/bin/python"
    # Reinstall only when the project files changed since the last install.
    local stamp="$VENV_DIR/.mailyard-installed$extras"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
        || ! "$VENV_PY" -c 'import mailyard' >/dev/null 2>&1; then
        echo "mailyard: installing into $VENV_DIR (pip install -e '.$extras')" >&2
        "$VENV_PY" -m pip install -q --disable-pip-version-check -e ".$extras" \
            || venv_die "pip install -e '.$extras' into $VENV_DIR failed"
        touch "$stamp"
    fi
}
