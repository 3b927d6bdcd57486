"""Every SSE error case of issue 5, with the status and S3 error code AWS answers, through boto3 (raw headers via
`before-sign` hooks) and awscurl. After every refused write: nothing stored under the key, the bucket's listing and
multipart uploads unchanged, and no temp file left in DATA/.coffer/tmp.

The KMS outage cases (admin API `stop`) get a server of their own; the rest share one for the module.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from harness import CofferServer, awscurl_status, unique_name
from sse_helpers import (DEFAULT_KMS_KEY, PACKAGE, CustomerKey, Sse, assert_absent, assert_no_temp_files, create_kms_key,
                         encryption_context, expect_error, extra_headers, kms_admin_ok, listing, no_retry_client,
                         random_bytes, raw_customer_params, refused_write, running_server)

BODY = random_bytes(3 * PACKAGE + 5, seed=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> CofferServer:
    with running_server(tmp_path_factory) as started:
        yield started


@pytest.fixture
def fresh(server) -> str:
    """An empty bucket for one test."""
    name = unique_name("sse-err")
    server.s3.create_bucket(Bucket=name)
    return name


class Stored:
    """One object per encryption mode in a module bucket: plain, sse-s3, sse-kms, sse-c."""

    def __init__(self, server: CofferServer):
        self.bucket = unique_name("sse-err-objects")
        self.kms_key = DEFAULT_KMS_KEY  # exists on every fresh server; other keys need the admin API
        self.modes = {"plain": Sse.none(), "sse-s3": Sse.s3(), "sse-kms": Sse.kms(self.kms_key), "sse-c": Sse.c()}
        server.s3.create_bucket(Bucket=self.bucket)
        for name, sse in self.modes.items():
            server.s3.put_object(Bucket=self.bucket, Key=name, Body=BODY, **sse.write_args())

    @property
    def customer(self) -> CustomerKey:
        return self.modes["sse-c"].customer


@pytest.fixture(scope="module")
def stored(server) -> Stored:
    return Stored(server)


def bad_customer_headers() -> dict[str, dict]:
    """boto3 parameters sent verbatim, one broken thing each."""
    good = CustomerKey.generate()
    other = CustomerKey.generate()
    short = b"k" * 16
    long = b"k" * 33
    return {
        "md5-mismatch": raw_customer_params("AES256", good.b64, other.md5_b64),
        "bad-base64": raw_customer_params("AES256", "not*base64*at*all!", good.md5_b64),
        "key-16-bytes": raw_customer_params("AES256", base64.b64encode(short).decode(),
                                            base64.b64encode(hashlib.md5(short).digest()).decode()),
        "key-33-bytes": raw_customer_params("AES256", base64.b64encode(long).decode(),
                                            base64.b64encode(hashlib.md5(long).digest()).decode()),
        "algorithm-AES128": raw_customer_params("AES128", good.b64, good.md5_b64),
    }


BAD_CUSTOMER = list(bad_customer_headers())


# ---- reading SSE-C objects -----------------------------------------------------------------------------------------

def test_sse_c_object_read_without_key_is_400(server, stored):
    s3 = server.s3
    expect_error(lambda: s3.get_object(Bucket=stored.bucket, Key="sse-c"), 400, "InvalidRequest")
    expect_error(lambda: s3.get_object(Bucket=stored.bucket, Key="sse-c", Range="bytes=0-9"), 400, "InvalidRequest")
    expect_error(lambda: s3.head_object(Bucket=stored.bucket, Key="sse-c"), 400)
    result = server.awscurl(f"/{stored.bucket}/sse-c", check=False)
    assert awscurl_status(result) == 400 and "<Code>InvalidRequest</Code>" in result.stdout, result.stdout


def test_sse_c_object_read_with_wrong_key_is_403(server, stored):
    s3 = server.s3
    wrong = CustomerKey.generate()
    expect_error(lambda: s3.get_object(Bucket=stored.bucket, Key="sse-c", **wrong.boto()), 403, "AccessDenied")
    expect_error(lambda: s3.head_object(Bucket=stored.bucket, Key="sse-c", **wrong.boto()), 403)
    expect_error(lambda: s3.get_object(Bucket=stored.bucket, Key="sse-c", PartNumber=1, **wrong.boto()),
                 403, "AccessDenied")
    # and the right key still works
    assert s3.get_object(Bucket=stored.bucket, Key="sse-c", **stored.customer.boto())["Body"].read() == BODY
    # the same with raw headers through awscurl
    for key, status in ((wrong, 403), (stored.customer, 200)):
        header_args = [arg for name, value in key.headers().items() for arg in ("-H", f"{name}: {value}")]
        result = server.awscurl(f"/{stored.bucket}/sse-c", "-X", "HEAD", *header_args, check=False)
        assert awscurl_status(result) == status, result.stderr[-2000:]


@pytest.mark.parametrize("case", BAD_CUSTOMER)
def test_malformed_customer_key_on_put_is_400_invalid_argument(server, fresh, case):
    s3 = server.s3
    params = bad_customer_headers()[case]
    refused_write(server, fresh, "obj", lambda: s3.put_object(Bucket=fresh, Key="obj", Body=BODY, **params),
                  400, "InvalidArgument")
    refused_write(server, fresh, "mpu", lambda: s3.create_multipart_upload(Bucket=fresh, Key="mpu", **params),
                  400, "InvalidArgument")


@pytest.mark.parametrize("case", BAD_CUSTOMER)
def test_malformed_customer_key_on_read_is_400_invalid_argument(server, stored, case):
    params = bad_customer_headers()[case]
    expect_error(lambda: server.s3.get_object(Bucket=stored.bucket, Key="sse-c", **params), 400, "InvalidArgument")
    expect_error(lambda: server.s3.head_object(Bucket=stored.bucket, Key="sse-c", **params), 400)


def test_md5_mismatch_message(server, fresh):
    good, other = CustomerKey.generate(), CustomerKey.generate()
    params = raw_customer_params("AES256", good.b64, other.md5_b64)
    refused_write(server, fresh, "obj", lambda: server.s3.put_object(Bucket=fresh, Key="obj", Body=BODY, **params),
                  400, "InvalidArgument", message="MD5")


@pytest.mark.parametrize("mode", ["plain", "sse-s3", "sse-kms"])
def test_sse_c_headers_on_an_object_without_sse_c_are_400(server, stored, mode):
    key = CustomerKey.generate()
    expect_error(lambda: server.s3.get_object(Bucket=stored.bucket, Key=mode, **key.boto()), 400, "InvalidRequest")
    expect_error(lambda: server.s3.head_object(Bucket=stored.bucket, Key=mode, **key.boto()), 400)


# ---- conflicting or unknown SSE headers on writes ------------------------------------------------------------------

@pytest.mark.parametrize("other", [{"ServerSideEncryption": "AES256"}, {"ServerSideEncryption": "aws:kms"},
                                   {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "KEY"}],
                         ids=["sse-s3", "sse-kms", "sse-kms-with-key"])
def test_sse_c_together_with_sse_s3_or_kms_is_400(server, stored, fresh, other):
    s3 = server.s3
    other = {k: (stored.kms_key if v == "KEY" else v) for k, v in other.items()}
    params = {**CustomerKey.generate().boto(), **other}
    refused_write(server, fresh, "obj", lambda: s3.put_object(Bucket=fresh, Key="obj", Body=BODY, **params),
                  400, "InvalidArgument")
    refused_write(server, fresh, "mpu", lambda: s3.create_multipart_upload(Bucket=fresh, Key="mpu", **params),
                  400, "InvalidArgument")
    refused_write(server, fresh, "copy", lambda: s3.copy_object(
        Bucket=fresh, Key="copy", CopySource={"Bucket": stored.bucket, "Key": "plain"}, **params),
        400, "InvalidArgument")


def test_server_side_encryption_header_on_get_and_head_is_400(server, stored):
    s3 = server.s3
    for value in ("AES256", "aws:kms"):
        with extra_headers(s3, "GetObject", {"x-amz-server-side-encryption": value}):
            expect_error(lambda: s3.get_object(Bucket=stored.bucket, Key="sse-s3"), 400, "InvalidArgument")
        with extra_headers(s3, "HeadObject", {"x-amz-server-side-encryption": value}):
            expect_error(lambda: s3.head_object(Bucket=stored.bucket, Key="sse-s3"), 400)
    result = server.awscurl(f"/{stored.bucket}/plain", "-H", "x-amz-server-side-encryption: AES256", check=False)
    assert awscurl_status(result) == 400, result.stdout
    assert "<Code>InvalidArgument</Code>" in result.stdout, result.stdout


@pytest.mark.parametrize("value", ["aes:kms", "AES128", "aws:kms:dsse-unknown"])
def test_unknown_server_side_encryption_value_is_400(server, stored, fresh, value):
    s3 = server.s3
    refused_write(server, fresh, "obj", lambda: s3.put_object(Bucket=fresh, Key="obj", Body=BODY,
                                                              ServerSideEncryption=value), 400, "InvalidArgument")
    refused_write(server, fresh, "mpu", lambda: s3.create_multipart_upload(Bucket=fresh, Key="mpu",
                                                                           ServerSideEncryption=value),
                  400, "InvalidArgument")
    refused_write(server, fresh, "copy", lambda: s3.copy_object(
        Bucket=fresh, Key="copy", CopySource={"Bucket": stored.bucket, "Key": "plain"}, ServerSideEncryption=value),
        400, "InvalidArgument")


def test_unknown_server_side_encryption_value_with_awscurl(server, fresh):
    result = server.awscurl(f"/{fresh}/curl", "-X", "PUT", "-d", "awscurl body", "-H",
                            "x-amz-server-side-encryption: aes:kms", check=False)
    assert awscurl_status(result) == 400 and "<Code>InvalidArgument</Code>" in result.stdout, result.stdout
    assert_absent(server.s3, fresh, "curl")
    assert_no_temp_files(server)


@pytest.mark.parametrize("headers", [
    {"ServerSideEncryption": "AES256", "SSEKMSKeyId": "KEY"},
    {"SSEKMSKeyId": "KEY"},
    {"SSEKMSEncryptionContext": encryption_context({"a": "b"})},
    {"ServerSideEncryption": "AES256", "SSEKMSEncryptionContext": encryption_context({"a": "b"})},
], ids=["key-id-with-AES256", "key-id-alone", "context-alone", "context-with-AES256"])
def test_kms_headers_without_aws_kms_are_400(server, stored, fresh, headers):
    s3 = server.s3
    params = {k: (stored.kms_key if v == "KEY" else v) for k, v in headers.items()}
    refused_write(server, fresh, "obj", lambda: s3.put_object(Bucket=fresh, Key="obj", Body=BODY, **params),
                  400, "InvalidArgument")
    refused_write(server, fresh, "mpu", lambda: s3.create_multipart_upload(Bucket=fresh, Key="mpu", **params),
                  400, "InvalidArgument")


@pytest.mark.parametrize("context", [
    "not base64 at all!",
    base64.b64encode(b"[1, 2]").decode(),
    base64.b64encode(b'{"n": 1}').decode(),
    encryption_context({"coffer:bucket": "someone-else"}),
], ids=["not-base64", "json-array", "non-string-value", "reserved-coffer-prefix"])
def test_malformed_encryption_context_is_400(server, stored, fresh, context):
    s3 = server.s3
    refused_write(server, fresh, "obj", lambda: s3.put_object(
        Bucket=fresh, Key="obj", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=stored.kms_key,
        SSEKMSEncryptionContext=context), 400, "InvalidArgument")


# ---- multipart uploads ---------------------------------------------------------------------------------------------

def test_upload_part_of_an_sse_c_upload_needs_the_same_key(server, stored, fresh):
    s3 = server.s3
    customer = CustomerKey.generate()
    upload_id = s3.create_multipart_upload(Bucket=fresh, Key="mpu", **customer.boto())["UploadId"]

    def no_parts():
        assert s3.list_parts(Bucket=fresh, Key="mpu", UploadId=upload_id).get("Parts", []) == []
        assert_no_temp_files(server)

    expect_error(lambda: s3.upload_part(Bucket=fresh, Key="mpu", UploadId=upload_id, PartNumber=1, Body=BODY),
                 400, "InvalidRequest")
    no_parts()
    expect_error(lambda: s3.upload_part(Bucket=fresh, Key="mpu", UploadId=upload_id, PartNumber=1, Body=BODY,
                                        **CustomerKey.generate().boto()), 400, "InvalidRequest")
    no_parts()
    expect_error(lambda: s3.upload_part(Bucket=fresh, Key="mpu", UploadId=upload_id, PartNumber=1, Body=BODY,
                                        **bad_customer_headers()["md5-mismatch"]), 400, "InvalidArgument")
    no_parts()
    # UploadPartCopy into the SSE-C upload without the upload's key
    expect_error(lambda: s3.upload_part_copy(Bucket=fresh, Key="mpu", UploadId=upload_id, PartNumber=1,
                                             CopySource={"Bucket": stored.bucket, "Key": "plain"}),
                 400, "InvalidRequest")
    no_parts()

    reply = s3.upload_part(Bucket=fresh, Key="mpu", UploadId=upload_id, PartNumber=1, Body=BODY, **customer.boto())
    s3.complete_multipart_upload(Bucket=fresh, Key="mpu", UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": reply["ETag"]}]})
    assert s3.get_object(Bucket=fresh, Key="mpu", **customer.boto())["Body"].read() == BODY


def test_sse_c_key_on_a_part_of_an_upload_without_sse_c_is_400(server, fresh):
    s3 = server.s3
    for sse in (Sse.none(), Sse.s3()):
        key = f"mpu-{sse.mode}"
        upload_id = s3.create_multipart_upload(Bucket=fresh, Key=key, **sse.write_args())["UploadId"]
        expect_error(lambda: s3.upload_part(Bucket=fresh, Key=key, UploadId=upload_id, PartNumber=1, Body=BODY,
                                            **CustomerKey.generate().boto()), 400, "InvalidRequest")
        assert s3.list_parts(Bucket=fresh, Key=key, UploadId=upload_id).get("Parts", []) == []
        s3.abort_multipart_upload(Bucket=fresh, Key=key, UploadId=upload_id)
    assert_no_temp_files(server)


# ---- copy sources ----------------------------------------------------------------------------------------------------

def test_copy_source_customer_key_errors(server, stored, fresh):
    s3 = server.s3
    source = {"Bucket": stored.bucket, "Key": "sse-c"}
    refused_write(server, fresh, "copy", lambda: s3.copy_object(Bucket=fresh, Key="copy", CopySource=source),
                  400, "InvalidRequest")
    refused_write(server, fresh, "copy", lambda: s3.copy_object(
        Bucket=fresh, Key="copy", CopySource=source, **CustomerKey.generate().boto_copy_source()),
        403, "AccessDenied")
    refused_write(server, fresh, "copy", lambda: s3.copy_object(
        Bucket=fresh, Key="copy", CopySource=source,
        **raw_customer_params("AES256", stored.customer.b64, CustomerKey.generate().md5_b64,
                              prefix="CopySourceSSECustomer")), 400, "InvalidArgument")
    # the source's key given as the destination's key does not open the source
    refused_write(server, fresh, "copy", lambda: s3.copy_object(
        Bucket=fresh, Key="copy", CopySource=source, **stored.customer.boto()), 400, "InvalidRequest")
    # a copy-source key for a source that is not SSE-C
    refused_write(server, fresh, "copy", lambda: s3.copy_object(
        Bucket=fresh, Key="copy", CopySource={"Bucket": stored.bucket, "Key": "sse-s3"},
        **CustomerKey.generate().boto_copy_source()), 400, "InvalidRequest")

    upload_id = s3.create_multipart_upload(Bucket=fresh, Key="upc")["UploadId"]
    expect_error(lambda: s3.upload_part_copy(Bucket=fresh, Key="upc", UploadId=upload_id, PartNumber=1,
                                             CopySource=source), 400, "InvalidRequest")
    expect_error(lambda: s3.upload_part_copy(Bucket=fresh, Key="upc", UploadId=upload_id, PartNumber=1,
                                             CopySource=source, **CustomerKey.generate().boto_copy_source()),
                 403, "AccessDenied")
    assert s3.list_parts(Bucket=fresh, Key="upc", UploadId=upload_id).get("Parts", []) == []
    assert_no_temp_files(server)


# ---- KMS keys ------------------------------------------------------------------------------------------------------

def test_unknown_kms_key_is_400_not_found(server, stored, fresh):
    s3 = server.s3
    missing = unique_name("no-such-key")
    params = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": missing}
    refused_write(server, fresh, "obj", lambda: s3.put_object(Bucket=fresh, Key="obj", Body=BODY, **params),
                  400, "KMS.NotFoundException")
    refused_write(server, fresh, "mpu", lambda: s3.create_multipart_upload(Bucket=fresh, Key="mpu", **params),
                  400, "KMS.NotFoundException")
    refused_write(server, fresh, "copy", lambda: s3.copy_object(
        Bucket=fresh, Key="copy", CopySource={"Bucket": stored.bucket, "Key": "plain"}, **params),
        400, "KMS.NotFoundException")
    result = server.aws("s3", "cp", "-", f"s3://{fresh}/cli", "--sse", "aws:kms", "--sse-kms-key-id", missing,
                        check=False, input="from the aws CLI")
    assert result.returncode != 0 and "KMS.NotFoundException" in result.stderr, result.stderr
    assert_absent(s3, fresh, "cli")
    assert_no_temp_files(server)


def test_disabled_kms_key_is_400_disabled(server, fresh):
    s3 = server.s3
    key_id = create_kms_key(server)
    sse = Sse.kms(key_id)
    s3.put_object(Bucket=fresh, Key="before", Body=BODY, **sse.write_args())
    assert kms_admin_ok(server, "POST", f"/keys/{key_id}/disable")["state"] == "Disabled"
    try:
        refused_write(server, fresh, "obj", lambda: s3.put_object(Bucket=fresh, Key="obj", Body=BODY,
                                                                  **sse.write_args()),
                      400, "KMS.DisabledException")
        refused_write(server, fresh, "mpu", lambda: s3.create_multipart_upload(Bucket=fresh, Key="mpu",
                                                                               **sse.write_args()),
                      400, "KMS.DisabledException")
        expect_error(lambda: s3.get_object(Bucket=fresh, Key="before"), 400, "KMS.DisabledException")
    finally:
        assert kms_admin_ok(server, "POST", f"/keys/{key_id}/enable")["state"] == "Enabled"
    assert s3.get_object(Bucket=fresh, Key="before")["Body"].read() == BODY
    sse.check_echo(s3.put_object(Bucket=fresh, Key="after", Body=BODY, **sse.write_args()))


# ---- KMS stopped ---------------------------------------------------------------------------------------------------

def test_stopped_kms_is_503_while_plaintext_and_sse_c_keep_working(coffer_factory):
    server = coffer_factory()
    s3 = server.s3
    strict = no_retry_client(server)  # 503 answers are asserted, not retried
    bucket, default_bucket = unique_name("sse-stop"), unique_name("sse-stop-default")
    for name in (bucket, default_bucket):
        s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=default_bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    key_id = create_kms_key(server)
    customer = CustomerKey.generate()
    for name, sse in {"kms": Sse.kms(key_id), "s3": Sse.s3()}.items():
        s3.put_object(Bucket=bucket, Key=name, Body=BODY, **sse.write_args())

    assert kms_admin_ok(server, "POST", "/stop")["status"] == "Stopped"
    for params in ({"ServerSideEncryption": "AES256"}, {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id},
                   {"ServerSideEncryption": "aws:kms"}):
        answer = refused_write(server, bucket, "new", lambda: strict.put_object(Bucket=bucket, Key="new", Body=BODY,
                                                                                **params), 503, s3=strict)
        assert re.search(r"\bKMS\b", answer["Error"]["Message"]), answer["Error"]
        refused_write(server, bucket, "new-mpu", lambda: strict.create_multipart_upload(Bucket=bucket, Key="new-mpu",
                                                                                        **params), 503, s3=strict)
    refused_write(server, default_bucket, "by-default",
                  lambda: strict.put_object(Bucket=default_bucket, Key="by-default", Body=BODY), 503, s3=strict)
    for name in ("kms", "s3"):
        answer = expect_error(lambda: strict.get_object(Bucket=bucket, Key=name), 503)
        assert re.search(r"\bKMS\b", answer["Error"]["Message"]), answer["Error"]
    result = server.awscurl(f"/{bucket}/kms", check=False)
    assert awscurl_status(result) == 503 and "KMS" in result.stdout, result.stdout

    # what needs no KMS keeps working
    s3.put_object(Bucket=bucket, Key="plain", Body=BODY)
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == BODY
    Sse.c(customer).check_echo(s3.put_object(Bucket=bucket, Key="sse-c", Body=BODY, **customer.boto()))
    assert s3.get_object(Bucket=bucket, Key="sse-c", **customer.boto())["Body"].read() == BODY
    assert [entry[0] for entry in listing(s3, bucket)] == ["kms", "plain", "s3", "sse-c"]

    assert kms_admin_ok(server, "POST", "/start")["status"] == "Running"
    for name in ("kms", "s3"):
        assert s3.get_object(Bucket=bucket, Key=name)["Body"].read() == BODY
    Sse.s3().check_echo(s3.put_object(Bucket=default_bucket, Key="by-default", Body=BODY))
    assert_no_temp_files(server)
