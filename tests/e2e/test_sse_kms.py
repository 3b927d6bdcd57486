"""SSE-KMS on the embedded local KMS backend: keys created through the admin API, the key id echoed exactly as the
client named it (a bare id or a key ARN), the server's default key when none is named, the encryption context
(`--ssekms-encryption-context` / SSEKMSEncryptionContext, base64 JSON) and bucket-key-enabled echoed by PUT, copy and
multipart answers, with the aws CLI and boto3."""

from __future__ import annotations

import json

import pytest

from harness import unique_name
from sse_helpers import (DEFAULT_KMS_KEY, PACKAGE, MiB, Sse, create_kms_key, encryption_context, etag_of, md5_hex,
                         random_bytes)

BODY = random_bytes(5 * PACKAGE + 3, seed=31)


@pytest.fixture(scope="module")
def kms_key(coffer) -> str:
    return create_kms_key(coffer, unique_name("kms-key"))


def test_aws_s3api_put_echoes_key_context_and_bucket_key(coffer, bucket, kms_key, tmp_path):
    context = encryption_context({"project": "coffer", "suite": "e2e"})
    source = tmp_path / "body"
    source.write_bytes(BODY)
    put = json.loads(coffer.aws(
        "s3api", "put-object", "--bucket", bucket, "--key", "cli", "--body", str(source),
        "--server-side-encryption", "aws:kms", "--ssekms-key-id", kms_key,
        "--ssekms-encryption-context", context, "--bucket-key-enabled").stdout)
    assert put["ServerSideEncryption"] == "aws:kms", put
    assert put["SSEKMSKeyId"] == kms_key, put
    assert put["SSEKMSEncryptionContext"] == context, put
    assert put["BucketKeyEnabled"] is True, put
    assert etag_of(put) != md5_hex(BODY), "an SSE-KMS ETag is not the plaintext MD5"

    head = json.loads(coffer.aws("s3api", "head-object", "--bucket", bucket, "--key", "cli").stdout)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["BucketKeyEnabled"]) == \
        ("aws:kms", kms_key, True), head
    assert head["ContentLength"] == len(BODY)
    target = tmp_path / "download"
    got = json.loads(coffer.aws("s3api", "get-object", "--bucket", bucket, "--key", "cli", str(target)).stdout)
    assert got["SSEKMSKeyId"] == kms_key, got
    assert target.read_bytes() == BODY


def test_boto3_context_on_put_copy_and_multipart(coffer, bucket, kms_key):
    s3 = coffer.s3
    first = Sse.kms(kms_key, context=encryption_context({"stage": "put"}), bucket_key=True)
    first.check_echo(s3.put_object(Bucket=bucket, Key="put", Body=BODY, **first.write_args()), context_echoed=True)
    got = s3.get_object(Bucket=bucket, Key="put")
    first.check_echo(got)
    assert got["Body"].read() == BODY

    second = Sse.kms(kms_key, context=encryption_context({"stage": "copy", "extra": "pair"}))
    copied = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "put"},
                            **second.write_args())
    second.check_echo(copied, context_echoed=True)
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == BODY

    third = Sse.kms(kms_key, context=encryption_context({"stage": "multipart"}), bucket_key=True)
    created = s3.create_multipart_upload(Bucket=bucket, Key="mpu", **third.write_args())
    third.check_echo(created, context_echoed=True)
    chunks = [random_bytes(5 * MiB, seed=1), BODY]
    parts = []
    for number, chunk in enumerate(chunks, start=1):
        reply = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=created["UploadId"], PartNumber=number, Body=chunk)
        third.check_echo(reply)
        parts.append({"PartNumber": number, "ETag": reply["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=created["UploadId"],
                                        MultipartUpload={"Parts": parts})
    third.check_echo(done)
    got = s3.get_object(Bucket=bucket, Key="mpu")
    third.check_echo(got)
    assert got["Body"].read() == b"".join(chunks)


def test_key_id_is_echoed_exactly_as_named(coffer, bucket, kms_key):
    s3 = coffer.s3
    arn = f"arn:aws:kms:us-east-1:000000000000:key/{kms_key}"
    for key, sse in (("by-arn", Sse.kms(arn)), ("by-id", Sse.kms(kms_key)),
                     ("default-by-name", Sse.kms(DEFAULT_KMS_KEY)), ("default-unnamed", Sse.kms())):
        sse.check_echo(s3.put_object(Bucket=bucket, Key=key, Body=BODY, **sse.write_args()))
        sse.check_echo(s3.head_object(Bucket=bucket, Key=key))
        got = s3.get_object(Bucket=bucket, Key=key)
        sse.check_echo(got)
        assert got["Body"].read() == BODY


def test_objects_under_different_keys_and_contexts_stay_readable(coffer, bucket, kms_key):
    """Bucket keys are cached per (key, bucket, context): many objects under a mix of them all read back."""
    s3 = coffer.s3
    other = create_kms_key(coffer)
    choices = [Sse.kms(kms_key), Sse.kms(other), Sse.kms(kms_key, context=encryption_context({"n": "1"})),
               Sse.kms(kms_key, context=encryption_context({"n": "2"})), Sse.kms(), Sse.s3()]
    bodies = {}
    for round_ in range(3):
        for index, sse in enumerate(choices):
            key = f"mix/{round_}/{index}"
            bodies[key] = (sse, random_bytes(1000 + index, seed=round_ * 10 + index))
            s3.put_object(Bucket=bucket, Key=key, Body=bodies[key][1], **sse.write_args())
    for key, (sse, body) in bodies.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        sse.check_echo(got)
        assert got["Body"].read() == body, key
