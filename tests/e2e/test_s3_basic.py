"""The everyday path with the aws CLI v1 high-level commands and their defaults: mb, ls, cp up/down, rm, rb.

Sizes cover the edges: empty, one byte, one MiB (single PUT) and 100 MiB (aws s3 cp switches to multipart at 8 MiB,
CRC32 checksums on every part).
"""

from __future__ import annotations

import pytest

from harness import sha256_file, unique_name

MiB = 1 << 20


def test_mb_ls_rb(coffer):
    name = unique_name()
    out = coffer.aws("s3", "mb", f"s3://{name}").stdout
    assert f"make_bucket: {name}" in out
    listing = coffer.aws("s3", "ls").stdout
    assert name in [line.split()[-1] for line in listing.splitlines()]
    coffer.aws("s3", "rb", f"s3://{name}")
    listing = coffer.aws("s3", "ls").stdout
    assert name not in [line.split()[-1] for line in listing.splitlines() if line.strip()]


@pytest.mark.parametrize("size", [0, 1, MiB, 100 * MiB], ids=["0B", "1B", "1MiB", "100MiB"])
def test_cp_round_trip(coffer, bucket, files, tmp_path, size):
    source = files(size)
    coffer.aws("s3", "cp", str(source), f"s3://{bucket}/dir/object.bin")

    head = coffer.s3.head_object(Bucket=bucket, Key="dir/object.bin")
    assert head["ContentLength"] == size
    if size > 8 * MiB:
        assert head["ETag"].strip('"').endswith("-13"), "aws s3 cp sends 8 MiB parts: 100 MiB is 13 parts"

    target = tmp_path / "download.bin"
    coffer.aws("s3", "cp", f"s3://{bucket}/dir/object.bin", str(target))
    assert target.stat().st_size == size
    assert sha256_file(target) == sha256_file(source)


def test_ls_shows_prefixes_and_sizes(coffer, bucket, files):
    small = files(1)
    for key in ("top.txt", "dir/a.txt", "dir/b.txt", "dir/sub/c.txt"):
        coffer.aws("s3", "cp", str(small), f"s3://{bucket}/{key}")

    root = coffer.aws("s3", "ls", f"s3://{bucket}/").stdout.splitlines()
    assert any(line.split() == ["PRE", "dir/"] for line in root)
    assert any(line.split()[-2:] == ["1", "top.txt"] for line in root)
    assert len(root) == 2

    recursive = coffer.aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout.splitlines()
    assert sorted(line.split()[-1] for line in recursive) == ["dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "top.txt"]


def test_rm_and_recursive_rm(coffer, bucket, files):
    small = files(1)
    for key in ("keep.txt", "gone/a", "gone/b"):
        coffer.aws("s3", "cp", str(small), f"s3://{bucket}/{key}")
    coffer.aws("s3", "rm", f"s3://{bucket}/keep.txt")
    coffer.aws("s3", "rm", "--recursive", f"s3://{bucket}/gone/")
    assert coffer.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_cp_s3_to_s3(coffer, bucket, files, tmp_path):
    """Small objects are copied with CopyObject; above 8 MiB the CLI uses multipart UploadPartCopy."""
    destination = unique_name()
    coffer.aws("s3", "mb", f"s3://{destination}")
    for size, key in ((MiB, "small"), (20 * MiB, "large")):
        source = files(size)
        coffer.aws("s3", "cp", str(source), f"s3://{bucket}/{key}")
        coffer.aws("s3", "cp", f"s3://{bucket}/{key}", f"s3://{destination}/copy-of-{key}")
        target = tmp_path / key
        coffer.aws("s3", "cp", f"s3://{destination}/copy-of-{key}", str(target))
        assert sha256_file(target) == sha256_file(source)


def test_rb_refuses_non_empty_bucket(coffer, bucket, files):
    coffer.aws("s3", "cp", str(files(1)), f"s3://{bucket}/x")
    result = coffer.aws("s3", "rb", f"s3://{bucket}", check=False)
    assert result.returncode != 0
    assert "BucketNotEmpty" in result.stderr
    coffer.aws("s3", "rb", "--force", f"s3://{bucket}")
    assert bucket not in coffer.aws("s3", "ls").stdout


def test_cp_missing_object_fails_cleanly(coffer, bucket, tmp_path):
    result = coffer.aws("s3", "cp", f"s3://{bucket}/does-not-exist", str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "404" in result.stderr or "Not Found" in result.stderr
    assert not (tmp_path / "x").exists()
