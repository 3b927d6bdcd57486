"""Object keys are opaque UTF-8 strings up to 1,024 bytes: nothing a client sends may escape or corrupt the data dir.

Each test runs on a private server whose data dir sits a few levels inside a sandbox directory (and whose working
directory is in that sandbox too), so a write that climbs out with `../` or follows an absolute path lands in a place
the test walks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from harness import unique_name

TRAVERSAL_KEYS = [
    "../../etc/passwd",
    "../../../../../../../../etc/passwd",
    "..",
    ".",
    "../escape",
    "a/../../../../b",
    "./relative",
    "%2e%2e/x",
    "%2e%2e%2f%2e%2e%2fx",
    "..%2f..%2fy",
    "/abs",
    "/etc/passwd",
    "//double//slashes//",
    "a/./b",
    "a//b",
    "trailing/",
    "dir/..",
    "back\\slash\\..\\..\\z",
    ".coffer/tmp/x",
    "buckets/../.coffer/kms/local/master.key",
    "~/home",
    "$HOME/x",
    "con",
    "nul",
    "spaces and\ttabs\nand newline",
    "unicode/ключ/キー/🔑",
    "a" * 255,
    "a" * 256,
    "b" * 1024,
    "/".join(["d"] * 512),          # 1,023 bytes of tiny path segments
    "é" * 512,                      # 1,024 bytes of two-byte characters
]


def snapshot(root: Path) -> set[str]:
    entries = set()
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            entries.add(os.path.relpath(os.path.join(directory, name), root))
    return entries


def outside_data_dir(server) -> set[str]:
    """Everything in the server's sandbox that is not inside its data dir (or its own log file)."""
    data_rel = os.path.relpath(server.data_dir, server.sandbox)
    return {p for p in snapshot(server.sandbox)
            if p != data_rel and not p.startswith(data_rel + os.sep) and p != server.log_path.name}


@pytest.fixture
def isolated(coffer_factory):
    server = coffer_factory()
    name = unique_name("keys")
    server.s3.create_bucket(Bucket=name)
    server.s3.put_object(Bucket=name, Key="sentinel", Body=b"sentinel")
    return server, name


def test_traversal_keys_round_trip_and_stay_inside(isolated):
    server, name = isolated
    s3 = server.s3
    outside_before = outside_data_dir(server)
    data_top_before = set(os.listdir(server.data_dir))
    passwd_before = Path("/etc/passwd").read_bytes()

    bodies = {key: f"body of {key!r}".encode() for key in TRAVERSAL_KEYS}
    for key, body in bodies.items():
        s3.put_object(Bucket=name, Key=key, Body=body)

    # every key is its own object: none overwrote another (e.g. "a/./b" vs "a//b", "a"*255 vs "a"*256)
    for key, body in bodies.items():
        assert s3.get_object(Bucket=name, Key=key)["Body"].read() == body, key
    assert s3.get_object(Bucket=name, Key="sentinel")["Body"].read() == b"sentinel"

    listed = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name)
              for o in page["Contents"]]
    assert sorted(listed, key=str.encode) == sorted([*bodies, "sentinel"], key=str.encode)

    new_outside = outside_data_dir(server) - outside_before
    assert new_outside == set(), f"files appeared outside the data dir: {sorted(new_outside)}"
    assert set(os.listdir(server.data_dir)) == data_top_before, "keys must not create entries at the data dir's top"
    assert Path("/etc/passwd").read_bytes() == passwd_before
    assert not Path("/abs").exists()

    for key in bodies:
        s3.delete_object(Bucket=name, Key=key)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["sentinel"]


def test_traversal_keys_with_aws_cli(isolated, tmp_path):
    server, name = isolated
    source = tmp_path / "payload"
    source.write_bytes(b"cli payload")
    outside_before = outside_data_dir(server)
    for key in ("../../cli-escape", "%2e%2e/cli", "dir/../../up"):
        server.aws("s3", "cp", str(source), f"s3://{name}/{key}")
        target = tmp_path / "download"
        server.aws("s3api", "get-object", "--bucket", name, "--key", key, str(target))
        assert target.read_bytes() == b"cli payload"
    assert outside_data_dir(server) == outside_before


def test_key_too_long(isolated):
    server, name = isolated
    for key in ("k" * 1025, "é" * 513):
        with pytest.raises(ClientError) as error:
            server.s3.put_object(Bucket=name, Key=key, Body=b"x")
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error.value.response["Error"]["Code"] == "KeyTooLongError"


def test_nul_and_control_characters_never_corrupt(isolated):
    """AWS accepts any UTF-8; a server may refuse NUL with a 400, but must never store it half or fail with a 5xx."""
    server, name = isolated
    s3 = server.s3
    for key in ("nul\x00byte", "bell\x07", "del\x7f"):
        try:
            s3.put_object(Bucket=name, Key=key, Body=key.encode())
        except ClientError as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400, key
            with pytest.raises(ClientError):
                s3.head_object(Bucket=name, Key=key)
        else:
            assert s3.get_object(Bucket=name, Key=key)["Body"].read() == key.encode()
    assert s3.get_object(Bucket=name, Key="sentinel")["Body"].read() == b"sentinel"
