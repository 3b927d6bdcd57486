"""Bucket default encryption: PutBucketEncryption / GetBucketEncryption / DeleteBucketEncryption with the aws CLI and
boto3, and the default applied to every write without SSE headers — PutObject, multipart uploads, CopyObject and
aws s3 cp — while SSE headers on a request override it."""

from __future__ import annotations

import json

import pytest

from harness import sha256_file, unique_name
from sse_helpers import DEFAULT_KMS_KEY, PACKAGE, MiB, Sse, create_kms_key, expect_error, random_bytes

NOT_FOUND = "ServerSideEncryptionConfigurationNotFoundError"
BODY = random_bytes(2 * PACKAGE + 99, seed=21)


@pytest.fixture(scope="module")
def kms_key(coffer) -> str:
    return create_kms_key(coffer, unique_name("default-key"))


def rule(algorithm: str, key_id: str | None = None, bucket_key: bool | None = None) -> dict:
    default = {"SSEAlgorithm": algorithm}
    if key_id is not None:
        default["KMSMasterKeyID"] = key_id
    entry = {"ApplyServerSideEncryptionByDefault": default}
    if bucket_key is not None:
        entry["BucketKeyEnabled"] = bucket_key
    return entry


def set_default(s3, bucket: str, entry: dict) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [entry]})


def test_unset_configuration_is_404_and_delete_is_204(coffer, bucket):
    s3 = coffer.s3
    expect_error(lambda: s3.get_bucket_encryption(Bucket=bucket), 404, NOT_FOUND)
    reply = s3.delete_bucket_encryption(Bucket=bucket)
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 204
    result = coffer.aws("s3api", "get-bucket-encryption", "--bucket", bucket, check=False)
    assert result.returncode != 0 and NOT_FOUND in result.stderr, result.stderr


def test_put_get_delete_with_aws_cli(coffer, bucket):
    entry = rule("aws:kms", DEFAULT_KMS_KEY, bucket_key=True)
    coffer.aws("s3api", "put-bucket-encryption", "--bucket", bucket,
               "--server-side-encryption-configuration", json.dumps({"Rules": [entry]}))
    shown = json.loads(coffer.aws("s3api", "get-bucket-encryption", "--bucket", bucket).stdout)
    assert shown["ServerSideEncryptionConfiguration"]["Rules"] == [entry], shown

    replaced = rule("AES256")
    set_default(coffer.s3, bucket, replaced)
    rules = coffer.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"] for r in rules] == [{"SSEAlgorithm": "AES256"}], rules

    coffer.aws("s3api", "delete-bucket-encryption", "--bucket", bucket)
    expect_error(lambda: coffer.s3.get_bucket_encryption(Bucket=bucket), 404, NOT_FOUND)


@pytest.mark.parametrize("entry, expected", [
    (rule("AES256"), "sse-s3"),
    (rule("aws:kms", "KEY", bucket_key=True), "sse-kms-named"),
    (rule("aws:kms"), "sse-kms-default"),
], ids=["AES256", "aws-kms-named-key-bucket-key", "aws-kms-default-key"])
def test_default_applies_to_writes_without_sse_headers(coffer, bucket, files, tmp_path, request, entry, expected):
    s3 = coffer.s3
    kms_key = request.getfixturevalue("kms_key") if expected == "sse-kms-named" else None
    entry = json.loads(json.dumps(entry).replace('"KEY"', json.dumps(kms_key)))
    set_default(s3, bucket, entry)
    sse = {"sse-s3": Sse.s3(), "sse-kms-named": Sse.kms(kms_key, bucket_key=True),
           "sse-kms-default": Sse.kms()}[expected]

    # PutObject
    sse.check_echo(s3.put_object(Bucket=bucket, Key="put", Body=BODY))
    sse.check_echo(s3.head_object(Bucket=bucket, Key="put"))
    assert s3.get_object(Bucket=bucket, Key="put")["Body"].read() == BODY

    # multipart
    created = s3.create_multipart_upload(Bucket=bucket, Key="multipart")
    sse.check_echo(created)
    upload_id = created["UploadId"]
    parts = []
    for number, chunk in enumerate((BODY * 40, BODY), start=1):  # 5.2 MB + an unaligned last part
        reply = s3.upload_part(Bucket=bucket, Key="multipart", UploadId=upload_id, PartNumber=number, Body=chunk)
        sse.check_echo(reply)
        parts.append({"PartNumber": number, "ETag": reply["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="multipart", UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
    sse.check_echo(done)
    sse.check_echo(s3.head_object(Bucket=bucket, Key="multipart"))
    assert s3.get_object(Bucket=bucket, Key="multipart")["Body"].read() == BODY * 41

    # CopyObject from a plaintext object in a bucket without a default
    plain_bucket = unique_name("sse-plain")
    s3.create_bucket(Bucket=plain_bucket)
    s3.put_object(Bucket=plain_bucket, Key="plain", Body=BODY)
    Sse.none().check_echo(s3.head_object(Bucket=plain_bucket, Key="plain"))
    copied = s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": plain_bucket, "Key": "plain"})
    sse.check_echo(copied)
    sse.check_echo(s3.head_object(Bucket=bucket, Key="copied"))
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == BODY

    # aws s3 cp without --sse: a multipart upload (two parts), downloaded with ranged GETs
    source = files(9 * MiB)
    coffer.aws("s3", "cp", str(source), f"s3://{bucket}/cp")
    sse.check_echo(s3.head_object(Bucket=bucket, Key="cp"))
    target = tmp_path / "cp"
    coffer.aws("s3", "cp", f"s3://{bucket}/cp", str(target))
    assert sha256_file(target) == sha256_file(source)


def test_request_headers_override_the_default(coffer, bucket, kms_key):
    s3 = coffer.s3
    set_default(s3, bucket, rule("AES256"))
    overrides = [Sse.kms(kms_key), Sse.kms(), Sse.c()]
    for number, sse in enumerate(overrides):
        key = f"override-{number}-{sse.mode}"
        sse.check_echo(s3.put_object(Bucket=bucket, Key=key, Body=BODY, **sse.write_args()))
        sse.check_echo(s3.head_object(Bucket=bucket, Key=key, **sse.read_args()))
        assert s3.get_object(Bucket=bucket, Key=key, **sse.read_args())["Body"].read() == BODY
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="override-2-sse-c"), 400, "InvalidRequest")

    # an SSE-C multipart upload into a bucket with a default stays SSE-C
    customer = Sse.c()
    created = s3.create_multipart_upload(Bucket=bucket, Key="override-mpu", **customer.write_args())
    customer.check_echo(created)
    part = s3.upload_part(Bucket=bucket, Key="override-mpu", UploadId=created["UploadId"], PartNumber=1, Body=BODY,
                          **customer.read_args())
    s3.complete_multipart_upload(Bucket=bucket, Key="override-mpu", UploadId=created["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    customer.check_echo(s3.head_object(Bucket=bucket, Key="override-mpu", **customer.read_args()))

    # an aws:kms default, overridden by AES256 on PUT and on copy
    set_default(s3, bucket, rule("aws:kms", kms_key, bucket_key=True))
    Sse.s3().check_echo(s3.put_object(Bucket=bucket, Key="override-s3", Body=BODY, ServerSideEncryption="AES256"))
    Sse.s3().check_echo(s3.head_object(Bucket=bucket, Key="override-s3"))
    copied = s3.copy_object(Bucket=bucket, Key="override-copy", CopySource={"Bucket": bucket, "Key": "override-s3"},
                            ServerSideEncryption="AES256")
    Sse.s3().check_echo(copied)
    Sse.s3().check_echo(s3.head_object(Bucket=bucket, Key="override-copy"))


def test_deleting_the_default_stops_applying_it(coffer, bucket):
    s3 = coffer.s3
    set_default(s3, bucket, rule("AES256"))
    s3.put_object(Bucket=bucket, Key="before", Body=BODY)
    assert s3.delete_bucket_encryption(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(lambda: s3.get_bucket_encryption(Bucket=bucket), 404, NOT_FOUND)
    Sse.none().check_echo(s3.put_object(Bucket=bucket, Key="after", Body=BODY))
    Sse.none().check_echo(s3.head_object(Bucket=bucket, Key="after"))
    Sse.s3().check_echo(s3.head_object(Bucket=bucket, Key="before"))  # objects keep their own encryption
    assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == BODY


@pytest.mark.parametrize("entry", [rule("aes:kms"), rule("AES256", "some-key")], ids=["unknown-algorithm",
                                                                                         "key-id-with-AES256"])
def test_invalid_configuration_is_refused(coffer, bucket, entry):
    expect_error(lambda: set_default(coffer.s3, bucket, entry), 400)
    expect_error(lambda: coffer.s3.get_bucket_encryption(Bucket=bucket), 404, NOT_FOUND)
    Sse.none().check_echo(coffer.s3.put_object(Bucket=bucket, Key="still-plain", Body=BODY))


@pytest.mark.parametrize("key_id, status, code", [
    ("k" * 10_000, 400, "InvalidArgument"),
    ("alias/some-key", 400, "InvalidArgument"),
    ("no-such-key", 400, "KMS.NotFoundException"),
], ids=["10000-characters", "alias", "unknown-key"])
def test_kms_key_that_writes_would_fail_on_is_refused(coffer, bucket, key_id, status, code):
    """Refused at PutBucketEncryption rather than failing every later write; nothing is stored."""
    answer = expect_error(lambda: set_default(coffer.s3, bucket, rule("aws:kms", key_id)), status, code)
    assert len(answer["Error"]["Message"]) < 500, "the answer echoed a huge id"
    expect_error(lambda: coffer.s3.get_bucket_encryption(Bucket=bucket), 404, NOT_FOUND)
    Sse.none().check_echo(coffer.s3.put_object(Bucket=bucket, Key="still-plain", Body=BODY))


def test_kms_key_arn_is_accepted(coffer, bucket, kms_key):
    arn = f"arn:aws:kms:us-east-1:123456789012:key/{kms_key}"
    set_default(coffer.s3, bucket, rule("aws:kms", arn))
    Sse.kms(arn).check_echo(coffer.s3.put_object(Bucket=bucket, Key="by-arn", Body=BODY))
    assert coffer.s3.get_object(Bucket=bucket, Key="by-arn")["Body"].read() == BODY
