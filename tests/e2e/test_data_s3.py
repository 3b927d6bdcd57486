"""The S3 data engine (`--data-engine s3`): the SQL metadata engine with its stored bytes in a bucket of an
S3-compatible cluster, here a real SeaweedFS.

- encrypted objects (SSE-S3, SSE-KMS, SSE-C; single and multipart) are only ciphertext there, under opaque names
  below the configured prefix, and read back whole and by range;
- a data file an overwrite or delete released stays readable for the grace period (a GET in flight finishes), and
  is deleted after it;
- the start fails clearly on an unreachable endpoint, without credentials, without the SQL engine, and on a
  metadata database created with its data elsewhere; the secret key never reaches the log.
"""

from __future__ import annotations

import time

import pytest

from harness import SeaweedFs, unique_name
from sse_helpers import MiB, CustomerKey, Sse, create_kms_key, multipart_put, random_bytes
from storage import storage

PREFIX = "coffer-data/"
GRACE_SECONDS = 10  # long enough for the in-flight GET below on any machine


def s3_data_args(cluster: SeaweedFs, bucket: str, *extra: str, endpoint: str | None = None) -> list[str]:
    return ["--metadata", "sqlite", "--data-engine", "s3", "--data-s3-endpoint", endpoint or cluster.endpoint,
            "--data-s3-bucket", bucket, "--data-s3-prefix", PREFIX, *extra]


def s3_data_env(cluster: SeaweedFs) -> dict[str, str]:
    return {"COFFER_DATA_S3_ACCESS_KEY_ID": cluster.credentials.access_key,
            "COFFER_DATA_S3_SECRET_ACCESS_KEY": cluster.credentials.secret_key}


def new_data_bucket(cluster: SeaweedFs) -> str:
    name = unique_name("coffer-data")
    cluster.s3_client().create_bucket(Bucket=name)
    return name


def bucket_keys(cluster: SeaweedFs, bucket: str) -> list[str]:
    client = cluster.s3_client()
    return sorted(item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for item in page.get("Contents", []))


def canary_body(size: int, seed: int) -> tuple[bytes, bytes]:
    """A body of `size` random bytes with a unique plaintext marker every 64 KiB (so any stored slice of the
    plaintext would show one)."""
    marker = f"COFFER-S3-DATA-CANARY-{unique_name()}".encode()
    body = bytearray(random_bytes(size, seed))
    for at in range(0, size - len(marker), 64 * 1024):
        body[at:at + len(marker)] = marker
    return marker, bytes(body)


def test_encrypted_objects_are_only_ciphertext_on_the_cluster(coffer_factory, seaweedfs):
    data_bucket = new_data_bucket(seaweedfs)
    server = coffer_factory(args=s3_data_args(seaweedfs, data_bucket), env=s3_data_env(seaweedfs))
    s3 = server.s3
    bucket = unique_name("s3data")
    s3.create_bucket(Bucket=bucket)
    kms_key = create_kms_key(server)
    customer = CustomerKey.generate()
    modes = {"sse-s3": Sse.s3(), "sse-kms": Sse.kms(kms_key), "sse-c": Sse.c(customer)}
    bodies, markers = {}, {}
    for n, (name, sse) in enumerate(modes.items()):
        for kind, size in (("single", 3 * MiB + 7), ("multipart", 11 * MiB + 5)):
            key = f"{name}/{kind}"
            markers[key], bodies[key] = canary_body(size, seed=10 * n + len(kind))
            if kind == "single":
                s3.put_object(Bucket=bucket, Key=key, Body=bodies[key], **sse.write_args())
            else:
                multipart_put(s3, bucket, key, bodies[key], sse)
    control_marker, control = canary_body(2 * MiB, seed=99)
    s3.put_object(Bucket=bucket, Key="plaintext-control", Body=control)

    for key, body in bodies.items():
        sse = modes[key.split("/")[0]]
        assert s3.get_object(Bucket=bucket, Key=key, **sse.read_args())["Body"].read() == body, key
        # ranges inside a package, across packages and parts, and the tail
        for first, last in ((5, 100), (MiB - 3, 6 * MiB + 2), (len(body) - 70_000, len(body) - 1)):
            got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", **sse.read_args())
            assert got["Body"].read() == body[first:last + 1], (key, first, last)

    keys = bucket_keys(seaweedfs, data_bucket)
    assert keys and all(key.startswith(PREFIX + "data-") and "/" not in key[len(PREFIX):] for key in keys), keys
    assert not any(part in key for key in keys for part in (bucket, "single", "multipart", "sse")), keys
    assert len(keys) == 1 + 3 + 3 * 3, "a data file per single-part object and per part"
    stored = storage(server)
    assert stored.data_bucket() == (data_bucket, PREFIX)
    assert not list(stored.data_root.glob("*/data-*")), "data files in the data directory too"
    client = seaweedfs.s3_client()
    secrets_ = [customer.raw, customer.b64.encode()]
    found_control = False
    for key in keys:
        content = client.get_object(Bucket=data_bucket, Key=key)["Body"].read()
        found_control |= control_marker in content
        leaks = [name for name, marker in markers.items() if marker in content]
        assert not leaks, f"plaintext of {leaks} in {key}"
        assert not any(secret in content for secret in secrets_), f"the customer key in {key}"
    assert found_control, "the unencrypted control object's plaintext was not found: the search is broken"
    assert seaweedfs.credentials.secret_key not in server.log()


def test_released_data_stays_for_the_grace_period_then_goes(coffer_factory, seaweedfs):
    data_bucket = new_data_bucket(seaweedfs)
    server = coffer_factory(args=s3_data_args(seaweedfs, data_bucket, "--data-release-grace", f"{GRACE_SECONDS}s"),
                            env=s3_data_env(seaweedfs))
    s3 = server.s3
    bucket = unique_name("s3data")
    s3.create_bucket(Bucket=bucket)
    old, new = random_bytes(8 * MiB, seed=1), random_bytes(3 * MiB, seed=2)
    s3.put_object(Bucket=bucket, Key="k", Body=old)
    [old_file] = storage(server).object(bucket, "k").data_files()

    # A GET in flight when the object is overwritten reads the version it started on to the end.
    reading = s3.get_object(Bucket=bucket, Key="k")["Body"]
    head = reading.read(MiB)
    s3.put_object(Bucket=bucket, Key="k", Body=new)
    assert old_file.exists(), "a released data file went before its grace period"
    assert old_file in storage(server).released_data_files()
    assert head + reading.read() == old
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == new

    # After the grace period the background upkeep deletes it; a deleted object's file follows.
    [new_file] = storage(server).object(bucket, "k").data_files()
    s3.delete_object(Bucket=bucket, Key="k")
    deadline = time.monotonic() + 60
    while old_file.exists() or new_file.exists():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)
    assert storage(server).released_data_files() == set()
    assert "deleted released data files" in server.log()
    assert [key for key in bucket_keys(seaweedfs, data_bucket) if key.startswith(PREFIX)] == []


def test_a_server_refuses_to_start_without_a_usable_data_bucket(coffer_factory, seaweedfs, tmp_path):
    data_bucket = new_data_bucket(seaweedfs)
    secret = seaweedfs.credentials.secret_key

    with pytest.raises(RuntimeError) as refused:
        coffer_factory(args=s3_data_args(seaweedfs, data_bucket, endpoint="http://127.0.0.1:9"),
                       env=s3_data_env(seaweedfs))
    message = str(refused.value)
    assert f'cannot use the data bucket "{data_bucket}" at http://127.0.0.1:9' in message, message
    assert secret not in message

    with pytest.raises(RuntimeError) as refused:
        coffer_factory(args=s3_data_args(seaweedfs, unique_name("no-such-bucket")), env=s3_data_env(seaweedfs))
    assert "cannot use the data bucket" in str(refused.value) and secret not in str(refused.value)

    with pytest.raises(RuntimeError) as refused:
        coffer_factory(args=s3_data_args(seaweedfs, data_bucket),
                       env={"COFFER_DATA_S3_ACCESS_KEY_ID": None, "COFFER_DATA_S3_SECRET_ACCESS_KEY": None})
    assert "COFFER_DATA_S3_SECRET_ACCESS_KEY" in str(refused.value)

    with pytest.raises(RuntimeError) as refused:
        coffer_factory(args=s3_data_args(seaweedfs, data_bucket)[2:] + ["--metadata", "directory"],
                       env=s3_data_env(seaweedfs))
    assert "needs the SQL metadata engine" in str(refused.value)

    # The database remembers where its data is: another bucket, another prefix or the data directory are refused.
    first = coffer_factory(args=s3_data_args(seaweedfs, data_bucket), env=s3_data_env(seaweedfs))
    first.s3.create_bucket(Bucket="kept")
    first.s3.put_object(Bucket="kept", Key="k", Body=random_bytes(MiB, seed=3))
    first.stop_and_check()
    other_bucket = new_data_bucket(seaweedfs)
    for args in (s3_data_args(seaweedfs, other_bucket),
                 s3_data_args(seaweedfs, data_bucket)[:-1] + ["other-prefix/"],
                 ["--metadata", "sqlite", "--data-engine", "directory"]):
        with pytest.raises(RuntimeError) as refused:
            coffer_factory(data_dir=first.data_dir, args=args, env=s3_data_env(seaweedfs))
        assert f"keeps its data in s3://{data_bucket}/{PREFIX}" in str(refused.value), str(refused.value)
    again = coffer_factory(data_dir=first.data_dir, args=s3_data_args(seaweedfs, data_bucket),
                           env=s3_data_env(seaweedfs))
    assert again.s3.get_object(Bucket="kept", Key="k")["Body"].read() == random_bytes(MiB, seed=3)
