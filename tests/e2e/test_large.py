"""The "Done means" check from issue 2: a 1 GiB file goes up and down with `aws s3 cp` byte-identical.

Marked `large` so it can be selected (`-m large`) or skipped (`-m "not large"`); it is part of the default suite.
"""

from __future__ import annotations

import pytest

from harness import sha256_file, write_random_file

GiB = 1 << 30


@pytest.mark.large
def test_one_gib_round_trip(coffer, bucket, tmp_path):
    source = write_random_file(tmp_path / "source.bin", GiB)
    coffer.aws("s3", "cp", str(source), f"s3://{bucket}/one-gib.bin")
    head = coffer.s3.head_object(Bucket=bucket, Key="one-gib.bin")
    assert head["ContentLength"] == GiB
    target = tmp_path / "one-gib.bin"
    coffer.aws("s3", "cp", f"s3://{bucket}/one-gib.bin", str(target))
    assert target.stat().st_size == GiB
    assert sha256_file(target) == sha256_file(source)
    target.unlink()
    source.unlink()
    coffer.s3.delete_object(Bucket=bucket, Key="one-gib.bin")
