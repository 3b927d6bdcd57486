"""How SSE-C keys may reach the server.

- Over HTTPS with default client settings: botocore streams uploads as aws-chunked bodies with
  `x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER` and a CRC32 trailer; the SSE-C key headers travel with
  them and the server decodes, verifies and encrypts the same way as over plain HTTP.
- Over plain HTTP: accepted from loopback clients (every other SSE test), refused from a client connecting through
  another address unless the server runs with `--allow-insecure-sse-c`.
"""

from __future__ import annotations

import pytest

from harness import CofferServer, crc32_b64, sha256_file, unique_name
from sse_helpers import (MiB, CustomerKey, Sse, assert_absent, assert_no_temp_files, client_via, expect_error,
                         non_loopback_address, running_server, running_server_on_all_interfaces)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> CofferServer:
    with running_server(tmp_path_factory, tls=True) as server:
        yield server


def test_aws_cli_sse_c_round_trip_over_https(tls_server, files, tmp_path):
    """9 MiB: aws s3 cp sends CreateMultipartUpload and two UploadParts with the key and streamed trailers, and
    downloads with ranged GETs."""
    customer = CustomerKey.generate()
    bucket = unique_name("sse-tls")
    tls_server.aws("s3", "mb", f"s3://{bucket}")
    source = files(9 * MiB)
    tls_server.aws("s3", "cp", str(source), f"s3://{bucket}/obj", *customer.cli_cp())
    head = tls_server.s3.head_object(Bucket=bucket, Key="obj", **customer.boto())
    Sse.c(customer).check_echo(head)
    assert head["ContentLength"] == 9 * MiB and head["ETag"].strip('"').endswith("-2")
    expect_error(lambda: tls_server.s3.head_object(Bucket=bucket, Key="obj"), 400)
    target = tmp_path / "obj"
    tls_server.aws("s3", "cp", f"s3://{bucket}/obj", str(target), *customer.cli_cp())
    assert sha256_file(target) == sha256_file(source)


def test_boto3_put_sends_the_trailer_and_round_trips(tls_server):
    s3 = tls_server.s3
    bucket = unique_name("sse-tls")
    s3.create_bucket(Bucket=bucket)
    seen = {}

    def capture(request, **_):
        seen.update({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    body = b"sse-c over https, checksummed in a trailer " * 3000
    customer = CustomerKey.generate()
    s3.meta.events.register("before-send.s3.PutObject", capture)
    try:
        reply = s3.put_object(Bucket=bucket, Key="trailer", Body=body, **customer.boto())
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", capture)
    assert seen.get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER", \
        "botocore's default over https changed; this test no longer covers the trailer path"
    assert seen.get("x-amz-server-side-encryption-customer-key-md5") == customer.md5_b64
    Sse.c(customer).check_echo(reply)
    assert reply["ChecksumCRC32"] == crc32_b64(body)
    got = s3.get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED", **customer.boto())
    Sse.c(customer).check_echo(got)
    assert got["Body"].read() == body

    Sse.kms().check_echo(s3.put_object(Bucket=bucket, Key="kms", Body=body, ServerSideEncryption="aws:kms"))
    assert s3.get_object(Bucket=bucket, Key="kms")["Body"].read() == body


@pytest.fixture(scope="module")
def outside_address() -> str:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    return address


def test_sse_c_over_plain_http_from_another_address_is_refused(tmp_path_factory, outside_address):
    with running_server_on_all_interfaces(tmp_path_factory) as server:
        bucket = unique_name("sse-remote")
        server.s3.create_bucket(Bucket=bucket)
        customer = CustomerKey.generate()
        server.s3.put_object(Bucket=bucket, Key="stored", Body=b"stored from loopback", **customer.boto())
        remote = client_via(server, outside_address)

        expect_error(lambda: remote.put_object(Bucket=bucket, Key="obj", Body=b"secret", **customer.boto()),
                     400, "InvalidRequest")
        assert_absent(server.s3, bucket, "obj")
        expect_error(lambda: remote.create_multipart_upload(Bucket=bucket, Key="mpu", **customer.boto()),
                     400, "InvalidRequest")
        expect_error(lambda: remote.get_object(Bucket=bucket, Key="stored", **customer.boto()), 400, "InvalidRequest")
        assert server.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert_no_temp_files(server)
        # what carries no customer key is fine from there
        Sse.s3().check_echo(remote.put_object(Bucket=bucket, Key="sse-s3", Body=b"x", ServerSideEncryption="AES256"))
        assert remote.get_object(Bucket=bucket, Key="sse-s3")["Body"].read() == b"x"


def test_allow_insecure_sse_c_lets_other_addresses_in(tmp_path_factory, outside_address):
    with running_server_on_all_interfaces(tmp_path_factory, ["--allow-insecure-sse-c"]) as server:
        bucket = unique_name("sse-remote")
        server.s3.create_bucket(Bucket=bucket)
        customer = CustomerKey.generate()
        remote = client_via(server, outside_address)
        Sse.c(customer).check_echo(remote.put_object(Bucket=bucket, Key="obj", Body=b"opted in", **customer.boto()))
        assert remote.get_object(Bucket=bucket, Key="obj", **customer.boto())["Body"].read() == b"opted in"
