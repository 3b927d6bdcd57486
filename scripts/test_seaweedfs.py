"""A private SeaweedFS cluster for the test command (scripts/test.sh): started on free loopback ports by the e2e
harness, with one bucket, its settings written to the file given as the environment the store tests read
(`COFFER_TEST_DATA_S3=ENDPOINT`, `COFFER_TEST_DATA_S3_BUCKET`, `COFFER_TEST_DATA_S3_ACCESS_KEY_ID`,
`COFFER_TEST_DATA_S3_SECRET_ACCESS_KEY`, one `NAME=VALUE` a line), then stopped and removed when this process gets
SIGTERM or SIGINT.

    .venv/bin/python scripts/test_seaweedfs.py ENV_FILE &
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from harness import start_seaweedfs  # noqa: E402

BUCKET = "coffer-store-tests"


def main() -> None:
    env_file = Path(sys.argv[1])
    ends = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, ends)  # from now on, a stop request waits for sigwait below
    directory = Path(tempfile.mkdtemp(prefix="coffer-test-seaweedfs-"))
    cluster = start_seaweedfs(directory)
    try:
        cluster.s3_client().create_bucket(Bucket=BUCKET)
        settings = {
            "COFFER_TEST_DATA_S3": cluster.endpoint,
            "COFFER_TEST_DATA_S3_BUCKET": BUCKET,
            "COFFER_TEST_DATA_S3_ACCESS_KEY_ID": cluster.credentials.access_key,
            "COFFER_TEST_DATA_S3_SECRET_ACCESS_KEY": cluster.credentials.secret_key,
        }
        partial = env_file.with_name(env_file.name + ".partial")
        partial.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
        partial.replace(env_file)  # whole or not at all: the test command waits for the file
        signal.sigwait(ends)
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
