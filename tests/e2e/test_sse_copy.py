"""CopyObject and UploadPartCopy with server-side encryption (boto3, default settings).

All 16 source × destination combinations of {none, SSE-S3, SSE-KMS, SSE-C}: the copy decrypts the source (with
`x-amz-copy-source-server-side-encryption-customer-*` for an SSE-C source) and encrypts the destination as its
own headers say — never as the source was. Copying an object onto itself changes only its outer key: a new SSE-C key
(the old one is refused afterwards) or SSE-S3 → SSE-KMS, and the stored data files stay as they were.
UploadPartCopy moves ranges of an SSE-C object into an SSE-KMS multipart upload and back.
"""

from __future__ import annotations

import pytest

from harness import unique_name
from sse_helpers import (PACKAGE, MiB, CustomerKey, Sse, create_kms_key, encryption_context, etag_of, expect_error,
                         md5_hex, random_bytes, sha256)
from storage import stored_object

MODES = ["none", "sse-s3", "sse-kms", "sse-c"]
BODY = random_bytes(4 * PACKAGE + 12_345, seed=16)  # several packages and an unaligned tail
SMALL_BODY = random_bytes(5000, seed=17)  # kept in the object's record, not a data file


@pytest.fixture(scope="module")
def copy_bucket(coffer) -> str:
    name = unique_name("sse-copy")
    coffer.s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def kms_keys(coffer) -> tuple[str, str]:
    """Two keys: sources use the first, destinations the second."""
    return create_kms_key(coffer, unique_name("copy-src")), create_kms_key(coffer, unique_name("copy-dst"))


def source_sse(mode: str, request) -> Sse:
    if mode == "sse-kms":
        return Sse.kms(request.getfixturevalue("kms_keys")[0])
    return {"none": Sse.none(), "sse-s3": Sse.s3(), "sse-c": Sse.c()}[mode]


def destination_sse(mode: str, request) -> Sse:
    if mode == "sse-kms":
        key_id = request.getfixturevalue("kms_keys")[1]
        return Sse.kms(key_id, context=encryption_context({"copied": "yes"}), bucket_key=True)
    return {"none": Sse.none(), "sse-s3": Sse.s3(), "sse-c": Sse.c()}[mode]


def data_fingerprint(coffer, bucket: str, key: str) -> list[tuple[str, str]]:
    """The stored bytes of an object: its data files (name, digest), or its inline data."""
    stored = stored_object(coffer, bucket, key)
    inline = stored.inline_data()
    if inline is not None:
        return [("inline", sha256(inline))]
    return [(path.name, sha256(path.read_bytes())) for path in stored.data_files()]


@pytest.mark.parametrize("body", [BODY, SMALL_BODY], ids=["data-file", "inline"])
@pytest.mark.parametrize("destination", MODES)
@pytest.mark.parametrize("source", MODES)
def test_copy_object_every_combination(coffer, copy_bucket, request, source, destination, body):
    s3 = coffer.s3
    src, dst = source_sse(source, request), destination_sse(destination, request)
    name = f"{source}-to-{destination}-{len(body)}"
    source_key, destination_key = f"src/{name}", f"dst/{name}"
    s3.put_object(Bucket=copy_bucket, Key=source_key, Body=body, **src.write_args())

    reply = s3.copy_object(Bucket=copy_bucket, Key=destination_key,
                           CopySource={"Bucket": copy_bucket, "Key": source_key},
                           **src.copy_source_args(), **dst.write_args())
    dst.check_echo(reply, context_echoed=True)
    copied_etag = etag_of(reply["CopyObjectResult"])
    if destination in ("none", "sse-s3"):
        assert copied_etag == md5_hex(body), "a plaintext or SSE-S3 copy's ETag is the MD5 of the plaintext"
    else:
        assert copied_etag != md5_hex(body), f"an {destination} ETag is not the plaintext MD5"

    head = s3.head_object(Bucket=copy_bucket, Key=destination_key, **dst.read_args())
    dst.check_echo(head)
    assert head["ContentLength"] == len(body)
    assert etag_of(head) == copied_etag
    got = s3.get_object(Bucket=copy_bucket, Key=destination_key, **dst.read_args())
    dst.check_echo(got)
    assert got["Body"].read() == body
    ranged = s3.get_object(Bucket=copy_bucket, Key=destination_key, Range="bytes=1000-2999", **dst.read_args())
    assert ranged["Body"].read() == body[1000:3000]

    # the source is untouched and the destination is really under its own encryption
    assert s3.get_object(Bucket=copy_bucket, Key=source_key, **src.read_args())["Body"].read() == body
    if destination == "sse-c":
        expect_error(lambda: s3.get_object(Bucket=copy_bucket, Key=destination_key), 400, "InvalidRequest")
        if source == "sse-c":  # a different customer key: the source's key does not open the copy
            expect_error(lambda: s3.get_object(Bucket=copy_bucket, Key=destination_key, **src.read_args()),
                         403, "AccessDenied")
    elif source == "sse-c":
        expect_error(lambda: s3.get_object(Bucket=copy_bucket, Key=destination_key, **src.read_args()),
                     400, "InvalidRequest")


def test_copy_of_a_multipart_sse_c_object(coffer, copy_bucket, kms_keys):
    """A two-part SSE-C source (each part sealed on its own) copied into SSE-KMS and into plaintext."""
    s3 = coffer.s3
    src = Sse.c()
    data = random_bytes(5 * MiB + PACKAGE + 1, seed=17)
    upload_id = s3.create_multipart_upload(Bucket=copy_bucket, Key="mpu-source", **src.write_args())["UploadId"]
    parts = []
    for number, chunk in enumerate((data[:5 * MiB], data[5 * MiB:]), start=1):
        reply = s3.upload_part(Bucket=copy_bucket, Key="mpu-source", UploadId=upload_id, PartNumber=number,
                               Body=chunk, **src.read_args())
        parts.append({"PartNumber": number, "ETag": reply["ETag"]})
    s3.complete_multipart_upload(Bucket=copy_bucket, Key="mpu-source", UploadId=upload_id,
                                 MultipartUpload={"Parts": parts})
    for destination in (Sse.kms(kms_keys[1]), Sse.none()):
        key = f"mpu-copy-{destination.mode}"
        reply = s3.copy_object(Bucket=copy_bucket, Key=key, CopySource={"Bucket": copy_bucket, "Key": "mpu-source"},
                               **src.copy_source_args(), **destination.write_args())
        destination.check_echo(reply)
        got = s3.get_object(Bucket=copy_bucket, Key=key)
        destination.check_echo(got)
        assert sha256(got["Body"].read()) == sha256(data)


@pytest.mark.parametrize("body", [BODY, SMALL_BODY], ids=["data-file", "inline"])
def test_self_copy_changes_the_sse_c_key(coffer, copy_bucket, body):
    s3 = coffer.s3
    old, new = CustomerKey.generate(), CustomerKey.generate()
    key = f"rekey/sse-c-{len(body)}"
    s3.put_object(Bucket=copy_bucket, Key=key, Body=body, **old.boto())
    stored = data_fingerprint(coffer, copy_bucket, key)

    reply = s3.copy_object(Bucket=copy_bucket, Key=key, CopySource={"Bucket": copy_bucket, "Key": key},
                           **old.boto_copy_source(), **new.boto())
    Sse.c(new).check_echo(reply)

    expect_error(lambda: s3.get_object(Bucket=copy_bucket, Key=key, **old.boto()), 403, "AccessDenied")
    expect_error(lambda: s3.head_object(Bucket=copy_bucket, Key=key, **old.boto()), 403)
    expect_error(lambda: s3.get_object(Bucket=copy_bucket, Key=key), 400, "InvalidRequest")
    got = s3.get_object(Bucket=copy_bucket, Key=key, **new.boto())
    Sse.c(new).check_echo(got)
    assert got["Body"].read() == body
    assert data_fingerprint(coffer, copy_bucket, key) == stored, \
        "changing the SSE-C key rewrites metadata only: the stored bytes stay"


def test_self_copy_from_sse_s3_to_sse_kms(coffer, copy_bucket, kms_keys):
    s3 = coffer.s3
    key = "rekey/sse-s3-to-kms"
    s3.put_object(Bucket=copy_bucket, Key=key, Body=BODY, ServerSideEncryption="AES256")
    stored = data_fingerprint(coffer, copy_bucket, key)
    target = Sse.kms(kms_keys[1])
    reply = s3.copy_object(Bucket=copy_bucket, Key=key, CopySource={"Bucket": copy_bucket, "Key": key},
                           **target.write_args())
    target.check_echo(reply)
    head = s3.head_object(Bucket=copy_bucket, Key=key)
    target.check_echo(head)
    assert s3.get_object(Bucket=copy_bucket, Key=key)["Body"].read() == BODY
    assert data_fingerprint(coffer, copy_bucket, key) == stored, \
        "changing the outer key rewrites metadata only: the stored data files stay"


def upload_part_copy_assembly(coffer, bucket: str, source: Sse, destination: Sse, key: str) -> bytes:
    """A 10 MiB source copied into a new upload in three parts: two UploadPartCopy ranges (5 MiB from the start,
    then an unaligned range overlapping it by one byte) and a small UploadPart. Returns the expected content."""
    s3 = coffer.s3
    data = random_bytes(10 * MiB + 13, seed=len(key))
    s3.put_object(Bucket=bucket, Key=f"{key}-source", Body=data, **source.write_args())
    created = s3.create_multipart_upload(Bucket=bucket, Key=key, **destination.write_args())
    destination.check_echo(created, context_echoed=True)
    upload_id = created["UploadId"]
    ranges = [(0, 5 * MiB - 1), (5 * MiB - 1, len(data) - 1)]
    parts, expected = [], b""
    for number, (first, last) in enumerate(ranges, start=1):
        reply = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                    CopySource={"Bucket": bucket, "Key": f"{key}-source"},
                                    CopySourceRange=f"bytes={first}-{last}",
                                    **source.copy_source_args(), **destination.read_args())
        destination.check_echo(reply)
        parts.append({"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]})
        expected += data[first:last + 1]
    tail = b"a small last part"
    reply = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3, Body=tail,
                           **destination.read_args())
    parts.append({"PartNumber": 3, "ETag": reply["ETag"]})
    expected += tail
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert etag_of(done).endswith("-3")
    return expected


def test_upload_part_copy_from_sse_c_into_sse_kms(coffer, copy_bucket, kms_keys):
    destination = Sse.kms(kms_keys[1], context=encryption_context({"assembled": "from sse-c"}))
    expected = upload_part_copy_assembly(coffer, copy_bucket, Sse.c(), destination, "upc-c-to-kms")
    got = coffer.s3.get_object(Bucket=copy_bucket, Key="upc-c-to-kms")
    destination.check_echo(got)
    assert got["ContentLength"] == len(expected)
    assert got["Body"].read() == expected


def test_upload_part_copy_from_sse_kms_into_sse_c(coffer, copy_bucket, kms_keys):
    destination = Sse.c()
    expected = upload_part_copy_assembly(coffer, copy_bucket, Sse.kms(kms_keys[0]), destination, "upc-kms-to-c")
    got = coffer.s3.get_object(Bucket=copy_bucket, Key="upc-kms-to-c", **destination.read_args())
    destination.check_echo(got)
    assert got["Body"].read() == expected
    expect_error(lambda: coffer.s3.get_object(Bucket=copy_bucket, Key="upc-kms-to-c"), 400, "InvalidRequest")
