"""The SeaweedFS fixtures the S3 data-engine tests build on: a real cluster (`weed mini`) on loopback ports of its own,
driven with boto3's default settings, with a real S3 identity, stopped as a process group."""

from __future__ import annotations

import os

import botocore.exceptions
import pytest

from harness import Credentials, port_is_free, unique_name

pytestmark = pytest.mark.seaweedfs


def test_objects_round_trip_with_boto3_defaults(seaweedfs, files):
    s3 = seaweedfs.s3_client()
    bucket = unique_name()
    s3.create_bucket(Bucket=bucket)

    small = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="dir/small", Body=small)
    assert s3.get_object(Bucket=bucket, Key="dir/small")["Body"].read() == small

    # 12 MiB is over boto3's 8 MiB multipart threshold: two parts, of 8 MiB and 4 MiB
    big_path = files(12 << 20)
    s3.upload_file(str(big_path), bucket, "dir/big")
    head = s3.head_object(Bucket=bucket, Key="dir/big")
    assert head["ContentLength"] == 12 << 20 and head["ETag"].endswith('-2"')
    big = big_path.read_bytes()
    across_parts = s3.get_object(Bucket=bucket, Key="dir/big", Range="bytes=8388000-8389000")
    assert across_parts["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert across_parts["Body"].read() == big[8388000:8389001]
    assert s3.get_object(Bucket=bucket, Key="dir/big", Range="bytes=-100")["Body"].read() == big[-100:]

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]
    assert [(entry["Key"], entry["Size"]) for entry in listed] == [("dir/big", 12 << 20), ("dir/small", 1000)]

    s3.delete_object(Bucket=bucket, Key="dir/small")
    s3.delete_object(Bucket=bucket, Key="dir/big")
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        s3.head_bucket(Bucket=bucket)
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_wrong_credentials_are_refused(seaweedfs):
    bucket = unique_name()
    seaweedfs.s3_client().create_bucket(Bucket=bucket)
    wrong_secret = seaweedfs.s3_client(Credentials(seaweedfs.credentials.access_key, "not-the-secret-key"))
    unknown_key = seaweedfs.s3_client(Credentials("unknown-access-key", seaweedfs.credentials.secret_key))
    for client, code in ((wrong_secret, "SignatureDoesNotMatch"), (unknown_key, "InvalidAccessKeyId")):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            client.put_object(Bucket=bucket, Key="refused", Body=b"x")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert refused.value.response["Error"]["Code"] == code
    assert seaweedfs.s3_client().list_objects_v2(Bucket=bucket).get("Contents", []) == [], "nothing was written"


def test_private_cluster_stops_as_a_group(seaweedfs_factory, seaweedfs):
    cluster = seaweedfs_factory()
    assert cluster.endpoint != seaweedfs.endpoint and cluster.directory != seaweedfs.directory
    bucket = unique_name()
    cluster.s3_client().create_bucket(Bucket=bucket)
    cluster.s3_client().put_object(Bucket=bucket, Key="k", Body=b"private")
    with pytest.raises(botocore.exceptions.ClientError):
        seaweedfs.s3_client().head_bucket(Bucket=bucket)  # the shared cluster does not have it

    pgid = cluster.process.pid
    cluster.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # nothing of the group survives
    assert port_is_free(cluster.s3_port)
