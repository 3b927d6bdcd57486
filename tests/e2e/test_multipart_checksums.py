"""Full-object checksums of multipart uploads (`x-amz-checksum-type: FULL_OBJECT`), driven with boto3.

S3 lets a multipart upload declare, at CreateMultipartUpload, that its object's checksum is the CRC of the whole
object rather than the composite checksum-of-part-checksums (`-N`): CRC32 and CRC32C either way, CRC64NVME only
full-object, SHA-1 and SHA-256 only composite. The server combines the parts' CRCs, checks the value the client
declares at CompleteMultipartUpload (BadDigest when it differs, and nothing is stored), and returns it on HEAD and
GET like a single PUT's. boto3's managed transfer uses this when it is given the whole file's checksum.
"""

from __future__ import annotations

import base64
import zlib

import boto3.s3.transfer
import pytest
from awscrt import checksums

from harness import unique_name
from sse_helpers import CustomerKey, assert_absent, expect_error, random_bytes

MiB = 1 << 20

CRCS = {
    "CRC32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "CRC32C": lambda data: checksums.crc32c(data).to_bytes(4, "big"),
    "CRC64NVME": lambda data: checksums.crc64nvme(data).to_bytes(8, "big"),
}


def crc_b64(algorithm: str, data: bytes) -> str:
    return base64.b64encode(CRCS[algorithm](data)).decode()


@pytest.fixture
def fresh(coffer) -> str:
    name = unique_name("mpu-full")
    coffer.s3.create_bucket(Bucket=name)
    return name


def upload_parts(s3, bucket: str, key: str, upload_id: str, algorithm: str, parts: list[bytes], **extra) -> list:
    completed = []
    for number, body in enumerate(parts, start=1):
        reply = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                               ChecksumAlgorithm=algorithm, **extra)
        assert reply[f"Checksum{algorithm}"] == crc_b64(algorithm, body), "the part's own checksum"
        completed.append({"PartNumber": number, "ETag": reply["ETag"]})
    return completed


@pytest.mark.parametrize("algorithm, declared_type", [("CRC32", "FULL_OBJECT"), ("CRC32C", "FULL_OBJECT"),
                                                      ("CRC64NVME", None)])
def test_full_object_checksum_is_the_crc_of_the_whole_object(coffer, fresh, algorithm, declared_type):
    s3 = coffer.s3
    parts = [random_bytes(5 * MiB + 1, seed=1), random_bytes(5 * MiB, seed=2), random_bytes(777, seed=3)]
    whole = b"".join(parts)
    typed = {"ChecksumType": declared_type} if declared_type else {}  # CRC64NVME is full-object by default
    created = s3.create_multipart_upload(Bucket=fresh, Key="obj", ChecksumAlgorithm=algorithm, **typed)
    assert (created["ChecksumAlgorithm"], created["ChecksumType"]) == (algorithm, "FULL_OBJECT")
    upload_id = created["UploadId"]
    completed = upload_parts(s3, fresh, "obj", upload_id, algorithm, parts)
    listed = s3.list_parts(Bucket=fresh, Key="obj", UploadId=upload_id)
    assert listed["ChecksumType"] == "FULL_OBJECT"

    done = s3.complete_multipart_upload(Bucket=fresh, Key="obj", UploadId=upload_id, ChecksumType="FULL_OBJECT",
                                        **{f"Checksum{algorithm}": crc_b64(algorithm, whole)},
                                        MultipartUpload={"Parts": completed})
    assert done[f"Checksum{algorithm}"] == crc_b64(algorithm, whole)  # no "-3": the whole object's CRC
    assert done["ChecksumType"] == "FULL_OBJECT"
    assert done["ETag"].strip('"').endswith("-3")
    head = s3.head_object(Bucket=fresh, Key="obj", ChecksumMode="ENABLED")
    assert (head[f"Checksum{algorithm}"], head["ChecksumType"]) == (crc_b64(algorithm, whole), "FULL_OBJECT")
    got = s3.get_object(Bucket=fresh, Key="obj", ChecksumMode="ENABLED")  # botocore checks it against the body
    assert got["Body"].read() == whole


def test_a_wrong_full_object_checksum_stores_nothing(coffer, fresh):
    s3 = coffer.s3
    parts = [random_bytes(5 * MiB, seed=4), random_bytes(10, seed=5)]
    upload_id = s3.create_multipart_upload(Bucket=fresh, Key="obj", ChecksumAlgorithm="CRC32",
                                           ChecksumType="FULL_OBJECT")["UploadId"]
    completed = upload_parts(s3, fresh, "obj", upload_id, "CRC32", parts)
    wrong = crc_b64("CRC32", b"".join(parts[::-1]))  # the right parts in the wrong order
    expect_error(lambda: s3.complete_multipart_upload(
        Bucket=fresh, Key="obj", UploadId=upload_id, ChecksumCRC32=wrong, ChecksumType="FULL_OBJECT",
        MultipartUpload={"Parts": completed}), 400, "BadDigest")
    assert_absent(s3, fresh, "obj")
    assert len(s3.list_parts(Bucket=fresh, Key="obj", UploadId=upload_id)["Parts"]) == 2, "the upload stays"

    # Completing as composite an upload created full-object is refused too.
    expect_error(lambda: s3.complete_multipart_upload(
        Bucket=fresh, Key="obj", UploadId=upload_id, ChecksumType="COMPOSITE",
        MultipartUpload={"Parts": completed}), 400, "InvalidRequest")
    s3.complete_multipart_upload(Bucket=fresh, Key="obj", UploadId=upload_id, MultipartUpload={"Parts": completed})
    head = s3.head_object(Bucket=fresh, Key="obj", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc_b64("CRC32", b"".join(parts))


@pytest.mark.parametrize("algorithm, checksum_type", [("SHA256", "FULL_OBJECT"), ("SHA1", "FULL_OBJECT"),
                                                      ("CRC64NVME", "COMPOSITE"), (None, "FULL_OBJECT")])
def test_checksum_types_s3_does_not_allow_are_refused(coffer, fresh, algorithm, checksum_type):
    args = {"ChecksumType": checksum_type} | ({"ChecksumAlgorithm": algorithm} if algorithm else {})
    expect_error(lambda: coffer.s3.create_multipart_upload(Bucket=fresh, Key="obj", **args), 400, "InvalidRequest")
    assert coffer.s3.list_multipart_uploads(Bucket=fresh).get("Uploads", []) == []


def test_full_object_checksum_of_an_sse_c_upload_covers_the_plaintext(coffer, fresh):
    s3 = coffer.s3
    customer = CustomerKey.generate()
    parts = [random_bytes(5 * MiB, seed=6), random_bytes(3 * MiB + 5, seed=7)]
    whole = b"".join(parts)
    upload_id = s3.create_multipart_upload(Bucket=fresh, Key="secret", ChecksumAlgorithm="CRC32C",
                                           ChecksumType="FULL_OBJECT", **customer.boto())["UploadId"]
    completed = upload_parts(s3, fresh, "secret", upload_id, "CRC32C", parts, **customer.boto())
    s3.complete_multipart_upload(Bucket=fresh, Key="secret", UploadId=upload_id, ChecksumType="FULL_OBJECT",
                                 ChecksumCRC32C=crc_b64("CRC32C", whole), MultipartUpload={"Parts": completed},
                                 **customer.boto())
    got = s3.get_object(Bucket=fresh, Key="secret", ChecksumMode="ENABLED", **customer.boto())
    assert (got["ChecksumCRC32C"], got["ChecksumType"]) == (crc_b64("CRC32C", whole), "FULL_OBJECT")
    assert got["Body"].read() == whole


def test_managed_upload_given_the_files_checksum(coffer, fresh, tmp_path):
    """boto3's upload_file with the whole file's CRC32 in ExtraArgs: s3transfer makes a FULL_OBJECT upload."""
    data = random_bytes(11 * MiB + 3, seed=8)
    path = tmp_path / "file"
    path.write_bytes(data)
    config = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    coffer.s3.upload_file(str(path), fresh, "managed", ExtraArgs={"ChecksumCRC32": crc_b64("CRC32", data)},
                          Config=config)
    head = coffer.s3.head_object(Bucket=fresh, Key="managed", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (crc_b64("CRC32", data), "FULL_OBJECT")
