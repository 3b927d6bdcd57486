"""A private PostgreSQL server for the test command (scripts/test.sh): initdb'd and started on a free loopback port by
the e2e harness, its server URL (`postgres://USER:PASSWORD@127.0.0.1:PORT`, no database) written to the file given,
then stopped by PID and removed when this process gets SIGTERM or SIGINT.

    .venv/bin/python scripts/test_postgres.py URL_FILE &
"""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from harness import start_postgres  # noqa: E402


def main() -> None:
    url_file = Path(sys.argv[1])
    ends = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, ends)  # from now on, a stop request waits for sigwait below
    server = start_postgres(Path(tempfile.mkdtemp(prefix="coffer-test-postgres-")))
    try:
        url_file.write_text(server.url_for("").rstrip("/"))
        signal.sigwait(ends)
    finally:
        server.discard()


if __name__ == "__main__":
    main()
