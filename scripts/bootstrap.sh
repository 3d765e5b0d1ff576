#!/usr/bin/env bash
# Make a fresh Debian machine (python3, pip, git, apt) ready to run the test suite:
#   1. system packages: PostgreSQL server binaries (tests/pgserver.py runs a throw-away
#      cluster), Chromium (browser tests), python3-venv when .venv must be created,
#      nodejs and npm when npm is missing;
#   2. .venv with the project installed editable, with its dev extras;
#   3. axe-core for the browser tests (npm ci --prefix tests/browser) when missing.
# Idempotent: every step checks first and does nothing when already done.
#
# Usage: scripts/bootstrap.sh [--system-only]
#   --system-only   only the system-package step (no venv, no pip)
#
# Environment (mostly for testing this script):
#   BOOTSTRAP_DRY_RUN=1     print the apt-get commands instead of running them
#   BOOTSTRAP_PG_LIB_DIR    where Debian puts PostgreSQL versions (/usr/lib/postgresql)
#   BOOTSTRAP_CHROMIUM      the Chromium binary to look for (/usr/bin/chromium)
set -euo pipefail

SYSTEM_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --system-only) SYSTEM_ONLY=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
            exit 0
            ;;
        *)
            echo "bootstrap: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

DRY_RUN="${BOOTSTRAP_DRY_RUN:-0}"
PG_LIB_DIR="${BOOTSTRAP_PG_LIB_DIR:-/usr/lib/postgresql}"
CHROMIUM="${BOOTSTRAP_CHROMIUM:-/usr/bin/chromium}"
export DEBIAN_FRONTEND=noninteractive

# Work from the repository root whatever the caller's cwd.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'bootstrap: %s\n' "$*" >&2; }

# Same search order as find_pg_bin() in tests/pgserver.py: pg_config --bindir (only if it
# really holds the server tools: libpq-dev's pg_config alone does not), then
# $PG_LIB_DIR/*/bin, then PATH. Prints the directory; fails when there is none.
find_pg_bin() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    # Highest version first (an unmatched glob stays literal and fails the -x test).
    while IFS= read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done < <(printf '%s\n' "$PG_LIB_DIR"/*/bin | sort -V -r)
    if dir="$(command -v initdb 2>/dev/null)"; then
        dir="$(dirname "$dir")"
        if [[ -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    return 1
}

# Run as root: directly when we are root, else through sudo when there is one.
as_root() {
    if [[ "$DRY_RUN" == 1 ]]; then
        log "dry run: would run: $*"
        return 0
    fi
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        # sudo resets the environment; pass DEBIAN_FRONTEND explicitly.
        sudo env DEBIAN_FRONTEND=noninteractive "$@"
    else
        log "error: need root (or sudo) to run: $*"
        exit 1
    fi
}

system_packages() {
    local -a missing=()
    local pg_bin

    if pg_bin="$(find_pg_bin)"; then
        log "postgresql: found server binaries in $pg_bin"
    else
        log "postgresql: initdb not found, will install postgresql"
        missing+=(postgresql)
    fi
    # PostgreSQL refuses to run as root; as root, tests/pgserver.py runs it as the postgres
    # system user, which the postgresql package creates.
    if [[ "$(id -u)" -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
        log "postgresql: running as root and no 'postgres' user, will install postgresql"
        [[ " ${missing[*]-} " == *" postgresql "* ]] || missing+=(postgresql)
    fi

    if [[ -x "$CHROMIUM" ]]; then
        log "chromium: found $CHROMIUM"
    else
        log "chromium: $CHROMIUM not found, will install chromium"
        missing+=(chromium fonts-liberation)
    fi

    # npm installs the browser tests' JavaScript dependency (axe-core, tests/browser).
    if command -v npm >/dev/null 2>&1; then
        log "npm: found $(command -v npm)"
    else
        log "npm: not found, will install nodejs npm"
        missing+=(nodejs npm)
    fi

    # Debian's python3 has no ensurepip (so no `python3 -m venv`) without python3-venv.
    # Checked in --system-only mode too: that mode may be the only one run with root rights.
    if [[ ! -x .venv/bin/pip ]]; then
        if python3 -c 'import ensurepip' >/dev/null 2>&1; then
            log "python3-venv: ensurepip available"
        else
            log "python3-venv: ensurepip missing, will install python3-venv"
            missing+=(python3-venv)
        fi
    fi

    if [[ ${#missing[@]} -eq 0 ]]; then
        log "system packages: nothing to install"
        return 0
    fi
    # One apt-get update per run, and only because something is missing.
    log "system packages: apt-get update"
    as_root apt-get update -q
    log "system packages: apt-get install ${missing[*]}"
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"

    if [[ "$DRY_RUN" != 1 ]] && [[ " ${missing[*]} " == *" postgresql "* ]] && ! find_pg_bin >/dev/null; then
        log "error: postgresql installed but initdb still not found"
        exit 1
    fi
}

python_env() {
    if [[ ! -f pyproject.toml ]]; then
        log "error: pyproject.toml not found in $(pwd)"
        exit 1
    fi
    # Checking pip (not just the dir) also repairs a venv whose creation failed halfway.
    if [[ -x .venv/bin/pip ]]; then
        log "venv: .venv exists"
    else
        log "venv: creating .venv"
        python3 -m venv .venv
        rm -f .venv/.bootstrap-stamp
    fi
    if [[ .venv/.bootstrap-stamp -nt pyproject.toml ]]; then
        log "pip: .venv is up to date with pyproject.toml, skipping install"
    else
        log "pip: installing -e '.[dev]' into .venv"
        .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
        touch .venv/.bootstrap-stamp
    fi
}

# axe-core for the browser tests' accessibility checks, at the version pinned by
# tests/browser/package-lock.json.
browser_test_deps() {
    if [[ -f tests/browser/node_modules/axe-core/axe.min.js ]]; then
        log "npm: tests/browser/node_modules/axe-core present"
    else
        log "npm: npm ci --prefix tests/browser"
        npm ci --prefix tests/browser --no-audit --no-fund
    fi
}

system_packages
if [[ "$SYSTEM_ONLY" == 1 ]]; then
    log "done (--system-only)"
    exit 0
fi
python_env
browser_test_deps
log "done"
