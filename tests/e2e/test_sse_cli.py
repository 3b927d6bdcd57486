"""`aws s3 cp` up and down with every `--sse` flavour (aws CLI v1 from .venv, default settings: CRC32 checksums,
multipart from 8 MiB with 8 MiB parts, ranged parallel downloads), for 0 B, 1 B, 13 B, 1 MiB, 8 MiB and 100 MiB.

Each round trip checks the downloaded bytes (SHA-256), the HEAD answer's SSE headers (mode, the KMS key id exactly
as named, SSE-C algorithm and key MD5 but never the key), Content-Length in plaintext bytes and the ETag rules:
MD5 of the plaintext only for SSE-S3 single PUTs, `-N` for multipart.
"""

from __future__ import annotations

import json

import pytest

from harness import sha256_file, unique_name
from sse_helpers import MiB, CustomerKey, Sse, create_kms_key, etag_of, md5_hex

CLI_PART = 8 * MiB  # aws s3 cp: multipart_threshold and multipart_chunksize defaults
SIZES = {"0B": 0, "1B": 1, "13B": 13, "1MiB": MiB, "8MiB": 8 * MiB, "100MiB": 100 * MiB}
FLAVOURS = ["sse-s3", "sse-kms-named-key", "sse-kms-default-key", "sse-c"]


@pytest.fixture(scope="module")
def cli_bucket(coffer) -> str:
    name = unique_name("sse-cli")
    coffer.s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def kms_key(coffer) -> str:
    return create_kms_key(coffer, unique_name("cli-key"))


@pytest.fixture(scope="module")
def customer_key() -> CustomerKey:
    return CustomerKey.generate()


def choose(flavour: str, request, customer_key: CustomerKey) -> tuple[Sse, list[str], list[str]]:
    """(expected encryption, `aws s3 cp` upload flags, download flags)."""
    if flavour == "sse-s3":
        return Sse.s3(), ["--sse", "AES256"], []
    if flavour == "sse-kms-named-key":
        kms_key = request.getfixturevalue("kms_key")  # only these tests need the admin API
        return Sse.kms(kms_key), ["--sse", "aws:kms", "--sse-kms-key-id", kms_key], []
    if flavour == "sse-kms-default-key":
        return Sse.kms(), ["--sse", "aws:kms"], []
    return Sse.c(customer_key), customer_key.cli_cp(), customer_key.cli_cp()


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_aws_s3_cp_round_trip(coffer, cli_bucket, customer_key, files, tmp_path, request, flavour, size):
    sse, upload_flags, download_flags = choose(flavour, request, customer_key)
    source = files(size)
    key = f"{flavour}/{size}.bin"
    url = f"s3://{cli_bucket}/{key}"

    coffer.aws("s3", "cp", str(source), url, *upload_flags)

    head = coffer.s3.head_object(Bucket=cli_bucket, Key=key, **sse.read_args())
    sse.check_echo(head)
    assert head["ContentLength"] == size
    assert head.get("Metadata", {}) == {}, "internal encryption metadata leaked into user metadata"
    etag = etag_of(head)
    if size >= CLI_PART:
        parts = -(-size // CLI_PART)
        assert etag.endswith(f"-{parts}"), f"aws s3 cp uploads {size} bytes in {parts} parts; ETag {etag}"
    elif sse.mode == "sse-s3":
        assert etag == md5_hex(source.read_bytes()), "an SSE-S3 single PUT's ETag is the plaintext MD5"
    else:
        assert "-" not in etag and etag != md5_hex(source.read_bytes()), \
            f"an {sse.mode} ETag is not the plaintext MD5: {etag}"

    target = tmp_path / "download.bin"
    coffer.aws("s3", "cp", url, str(target), *download_flags)
    assert target.stat().st_size == size
    assert sha256_file(target) == sha256_file(source)

    if size == 13:  # the aws CLI's own HEAD shows the same, and never the SSE-C key
        shown = coffer.aws("s3api", "head-object", "--bucket", cli_bucket, "--key", key,
                           *(customer_key.cli_s3api() if sse.mode == "sse-c" else [])).stdout
        answer = json.loads(shown)
        if sse.mode == "sse-c":
            assert answer["SSECustomerAlgorithm"] == "AES256"
            assert answer["SSECustomerKeyMD5"] == customer_key.md5_b64
            assert customer_key.b64 not in shown and customer_key.text not in shown
        else:
            assert answer["ServerSideEncryption"] == ("AES256" if sse.mode == "sse-s3" else "aws:kms")
            if sse.mode == "sse-kms":
                assert answer["SSEKMSKeyId"] == (sse.kms_key_id or "coffer-default")
