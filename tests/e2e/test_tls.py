"""HTTPS with a CA-signed test certificate. Over TLS, botocore's defaults switch uploads to aws-chunked bodies with
`x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER` and a CRC32 trailer, which the server must decode and
verify."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

import pytest

from harness import CofferFactory, crc32_b64, sha256_file, unique_name

MiB = 1 << 20


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    factory = CofferFactory(tmp_path_factory)
    server = factory(tls=True)
    yield server
    factory.stop_all()


def test_boto3_put_uses_unsigned_trailer_and_round_trips(tls_server):
    s3 = tls_server.s3
    name = unique_name("tls")
    s3.create_bucket(Bucket=name)
    seen = {}

    def capture(request, **_):
        seen.update({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    s3.meta.events.register("before-send.s3.PutObject", capture)
    body = b"over https, checksummed in a trailer " * 1000
    reply = s3.put_object(Bucket=name, Key="trailer", Body=body)
    s3.meta.events.unregister("before-send.s3.PutObject", capture)

    assert seen.get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER", \
        "botocore's default over https changed; this test no longer covers the trailer path"
    assert seen.get("x-amz-trailer") == "x-amz-checksum-crc32"
    assert reply["ChecksumCRC32"] == crc32_b64(body)
    got = s3.get_object(Bucket=name, Key="trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ChecksumCRC32"] == crc32_b64(body)


@pytest.mark.parametrize("size", [0, 1, 1 * MiB, 20 * MiB], ids=["0B", "1B", "1MiB", "20MiB-multipart"])
def test_aws_cli_https_round_trip(tls_server, files, tmp_path, size):
    name = unique_name("tls")
    tls_server.aws("s3", "mb", f"s3://{name}")
    source = files(size)
    tls_server.aws("s3", "cp", str(source), f"s3://{name}/object")
    target = tmp_path / "download"
    tls_server.aws("s3", "cp", f"s3://{name}/object", str(target))
    assert sha256_file(target) == sha256_file(source)


def test_boto3_upload_file_multipart_over_https(tls_server, files, tmp_path):
    """boto3's transfer manager: UploadPart bodies carry CRC32 trailers too."""
    s3 = tls_server.s3
    name = unique_name("tls")
    s3.create_bucket(Bucket=name)
    source = files(20 * MiB)
    s3.upload_file(str(source), name, "tm")
    target = tmp_path / "tm"
    s3.download_file(name, "tm", str(target))
    assert sha256_file(target) == sha256_file(source)


def test_certificate_is_served_and_plain_http_is_not(tls_server):
    context = ssl.create_default_context(cafile=str(tls_server.tls.ca_cert))
    request = urllib.request.Request(tls_server.endpoint + "/")
    with pytest.raises(urllib.error.HTTPError) as error:  # unsigned → 403, but the TLS handshake verified
        urllib.request.urlopen(request, context=context, timeout=30)
    assert error.value.code == 403
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_server.port}/", timeout=10).read()
