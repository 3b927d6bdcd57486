#!/usr/bin/env bash
# The one test command (README and .ci/run use it): everything CI checks, in the order a failure is cheapest.
#
#   setup → cargo fmt --check → cargo clippy → cargo build → cargo test (the store's tests also on SQLite, on a
#   private PostgreSQL and on SQLite with the data on a private SeaweedFS) → pytest tests/e2e (real binary, real
#   clients) on the directory metadata engine (the files of what it implements itself), on PostgreSQL with the data on
#   SeaweedFS, then on the defaults (SQLite and the data directory)
#
# Every cargo step uses the release profile: the e2e tests need the release binary anyway, so clippy (whose build
# scripts and proc-macros are shared within a profile), the build and the unit tests all reuse one set of artifacts
# instead of compiling the dependency tree twice. Options:
#   E2E_ARGS="-k multipart"   extra pytest arguments (e.g. -m "not large" to skip the 1 GiB round trip)
#   E2E_WORKERS=N             pytest-xdist workers (default 2: the suite mostly waits on fsync, KMS time-outs and
#                             client start-up, so two workers overlap that; files stay whole per worker; 0 = serial)
#   SKIP_E2E=1                stop after the Rust tests
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

section() {
    printf '\n==== %s ====\n' "$*"
}

section "setup: Python tools into .venv"
bash scripts/setup.sh

section "cargo fmt --check"
cargo fmt --all --check -- --color never

section "cargo clippy (release profile, all targets, warnings are errors)"
cargo clippy --locked --workspace --all-targets --release -- -D warnings

section "cargo build --release"
cargo build --locked --workspace --release

section "cargo test --release"
cargo test --locked --workspace --release

# A private PostgreSQL (scripts/test_postgres.py) serves the store tests and the e2e run on PostgreSQL; it stops when
# this script ends, however it ends.
postgres_url_file="$(mktemp)"
seaweedfs_env_file="$(mktemp -u)"
postgres_pid=""
seaweedfs_pid=""
stop_servers() {
    for pid in $postgres_pid $seaweedfs_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$postgres_url_file" "$seaweedfs_env_file"
}
trap stop_servers EXIT

section "store tests on the SQL metadata engine: SQLite, then PostgreSQL (a private server)"
COFFER_TEST_ENGINE=sql cargo test --locked --release -p coffer-store --test store
.venv/bin/python scripts/test_postgres.py "$postgres_url_file" &
postgres_pid=$!
until [[ -s "$postgres_url_file" ]]; do
    kill -0 "$postgres_pid" 2>/dev/null || { echo "test: the private PostgreSQL server did not start" >&2; exit 1; }
    sleep 0.2
done
postgres_url="$(cat "$postgres_url_file")"
COFFER_TEST_ENGINE=postgres COFFER_TEST_POSTGRES_URL="$postgres_url" \
    cargo test --locked --release -p coffer-store --test store

section "store tests on SQLite with the S3 data engine (a private SeaweedFS)"
.venv/bin/python scripts/test_seaweedfs.py "$seaweedfs_env_file" &
seaweedfs_pid=$!
until [[ -s "$seaweedfs_env_file" ]]; do
    kill -0 "$seaweedfs_pid" 2>/dev/null || { echo "test: the SeaweedFS cluster for the store tests did not start" >&2; exit 1; }
    sleep 0.2
done
(set -a; . "$seaweedfs_env_file"; COFFER_TEST_ENGINE=sql cargo test --locked --release -p coffer-store --test store)
kill "$seaweedfs_pid"
wait "$seaweedfs_pid" || true
seaweedfs_pid=""

if [[ "${SKIP_E2E:-0}" == "1" ]]; then
    section "end-to-end tests skipped (SKIP_E2E=1)"
    exit 0
fi

section "end-to-end tests: pytest tests/e2e against target/release/coffer, on the directory metadata engine"
export COFFER_BIN="$repo/target/release/coffer"
workers="${E2E_WORKERS:-2}"
parallel=()
if [[ "$workers" != "0" ]]; then
    parallel=(-n "$workers" --dist loadfile)
fi
# The directory engine is no longer the default: it runs the files of what it implements on its own (objects, uploads,
# listings, copies, what is stored and how it is checked, repaired, rewrapped and migrated), not the whole suite.
directory_engine_files=()
for name in s3_basic objects multipart listing sse_multipart sse_copy sse_disk tamper scrub rewrap migrate health; do
    directory_engine_files+=("tests/e2e/test_$name.py")
done
# shellcheck disable=SC2086  # E2E_ARGS is a list of words on purpose
COFFER_E2E_METADATA=directory .venv/bin/python -m pytest "${directory_engine_files[@]}" "${parallel[@]}" ${E2E_ARGS:-}

section "end-to-end tests on PostgreSQL (a database per server) with the data on SeaweedFS (a prefix per server in one bucket)"
# shellcheck disable=SC2086
COFFER_E2E_METADATA=postgres COFFER_E2E_POSTGRES_URL="$postgres_url" COFFER_E2E_DATA=s3 \
    .venv/bin/python -m pytest tests/e2e "${parallel[@]}" ${E2E_ARGS:-}

section "end-to-end tests on the default engines (SQLite, data in the data directory)"
# pytest runs last so its summary ("N passed in …") is the final line of the run.
# shellcheck disable=SC2086
.venv/bin/python -m pytest tests/e2e "${parallel[@]}" ${E2E_ARGS:-}
