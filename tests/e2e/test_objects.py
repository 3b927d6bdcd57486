"""Object operations through boto3 with default settings: range and conditional GETs, metadata, copy, DeleteObjects,
ETags and checksums (CRC32 sent by default, verified by the server)."""

from __future__ import annotations

import base64
import datetime
import hashlib

import pytest
from botocore.exceptions import ClientError

from harness import crc32_b64
from sse_helpers import extra_headers

BODY = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable


def error_of(excinfo):
    response = excinfo.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.fixture
def stored(coffer, bucket):
    coffer.s3.put_object(Bucket=bucket, Key="ranged", Body=BODY)
    return bucket


@pytest.mark.parametrize("header,first,last", [
    ("bytes=0-9", 0, 9),
    ("bytes=1000-1999", 1000, 1999),
    ("bytes=-100", len(BODY) - 100, len(BODY) - 1),
    ("bytes=10000-", 10000, len(BODY) - 1),
    ("bytes=10200-99999", 10200, len(BODY) - 1),  # end beyond the object is clamped
    ("bytes=-999999", 0, len(BODY) - 1),           # suffix longer than the object is the whole object
])
def test_range_get(coffer, stored, header, first, last):
    reply = coffer.s3.get_object(Bucket=stored, Key="ranged", Range=header)
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert reply["Body"].read() == BODY[first:last + 1]
    assert reply["ContentLength"] == last - first + 1
    assert reply["ContentRange"] == f"bytes {first}-{last}/{len(BODY)}"


def test_ranged_head_answers_like_the_ranged_get(coffer, stored):
    head = coffer.s3.head_object(Bucket=stored, Key="ranged", Range="bytes=1000-1999")
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == 1000
    assert head["ContentRange"] == f"bytes 1000-1999/{len(BODY)}"
    whole = coffer.s3.head_object(Bucket=stored, Key="ranged")
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert whole["ContentLength"] == len(BODY) and "ContentRange" not in whole


def test_range_beyond_end_is_416(coffer, stored):
    with pytest.raises(ClientError) as error:
        coffer.s3.get_object(Bucket=stored, Key="ranged", Range=f"bytes={len(BODY)}-")
    assert error_of(error) == (416, "InvalidRange")


def test_range_with_aws_cli(coffer, stored, tmp_path):
    target = tmp_path / "slice"
    coffer.aws("s3api", "get-object", "--bucket", stored, "--key", "ranged", "--range", "bytes=5-14", str(target))
    assert target.read_bytes() == BODY[5:15]


def test_single_put_etag_is_md5(coffer, bucket):
    reply = coffer.s3.put_object(Bucket=bucket, Key="md5", Body=BODY)
    assert reply["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'
    assert coffer.s3.head_object(Bucket=bucket, Key="md5")["ETag"] == reply["ETag"]


def test_metadata_and_standard_headers_round_trip(coffer, bucket):
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    coffer.s3.put_object(
        Bucket=bucket, Key="meta", Body=b"{}", ContentType="application/json; charset=utf-8",
        ContentDisposition='attachment; filename="x.json"', ContentLanguage="en-GB", CacheControl="max-age=60",
        ContentEncoding="identity", Expires=expires, Metadata={"color": "blue", "Mixed-Case": "Value 1"})
    for reply in (coffer.s3.head_object(Bucket=bucket, Key="meta"), coffer.s3.get_object(Bucket=bucket, Key="meta")):
        assert reply["ContentType"] == "application/json; charset=utf-8"
        assert reply["ContentDisposition"] == 'attachment; filename="x.json"'
        assert reply["ContentLanguage"] == "en-GB"
        assert reply["CacheControl"] == "max-age=60"
        assert reply["ContentEncoding"] == "identity"
        assert reply["Expires"] == expires
        assert reply["Metadata"] == {"color": "blue", "mixed-case": "Value 1"}
    assert "x-amz-meta-color" in coffer.s3.head_object(Bucket=bucket, Key="meta")["ResponseMetadata"]["HTTPHeaders"]


def test_default_content_type(coffer, bucket):
    coffer.s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert coffer.s3.head_object(Bucket=bucket, Key="plain")["ContentType"] == "binary/octet-stream"


def test_conditional_get(coffer, bucket):
    s3 = coffer.s3
    etag = s3.put_object(Bucket=bucket, Key="cond", Body=b"conditional")["ETag"]
    head = s3.head_object(Bucket=bucket, Key="cond")
    past = head["LastModified"] - datetime.timedelta(days=1)
    future = head["LastModified"] + datetime.timedelta(days=1)

    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="cond", IfNoneMatch=etag)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert s3.get_object(Bucket=bucket, Key="cond", IfNoneMatch='"other"')["Body"].read() == b"conditional"

    assert s3.get_object(Bucket=bucket, Key="cond", IfMatch=etag)["Body"].read() == b"conditional"
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="cond", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error_of(error) == (412, "PreconditionFailed")

    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="cond", IfModifiedSince=future)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert s3.get_object(Bucket=bucket, Key="cond", IfModifiedSince=past)["Body"].read() == b"conditional"

    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="cond", IfUnmodifiedSince=past)
    assert error_of(error) == (412, "PreconditionFailed")

    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key="cond", IfNoneMatch=etag)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_copy_object_metadata_directives(coffer, bucket):
    s3 = coffer.s3
    s3.put_object(Bucket=bucket, Key="src", Body=BODY, ContentType="text/x-source", Metadata={"a": "1"})
    source = {"Bucket": bucket, "Key": "src"}

    s3.copy_object(Bucket=bucket, Key="copied", CopySource=source)  # default directive: COPY
    head = s3.head_object(Bucket=bucket, Key="copied")
    assert (head["ContentType"], head["Metadata"], head["ContentLength"]) == ("text/x-source", {"a": "1"}, len(BODY))
    assert head["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'

    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=source, MetadataDirective="REPLACE",
                   ContentType="text/x-new", Metadata={"b": "2"})
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-new", {"b": "2"})
    assert s3.get_object(Bucket=bucket, Key="replaced")["Body"].read() == BODY

    # copying an object onto itself is only legal when something changes (S3 answers InvalidRequest otherwise)
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=bucket, Key="src", CopySource=source)
    assert error_of(error) == (400, "InvalidRequest")
    s3.copy_object(Bucket=bucket, Key="src", CopySource=source, MetadataDirective="REPLACE", Metadata={"c": "3"})
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"c": "3"}
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == BODY


def test_copy_object_with_aws_cli_replace(coffer, bucket):
    coffer.s3.put_object(Bucket=bucket, Key="cli-src", Body=b"cli", Metadata={"old": "yes"})
    coffer.aws("s3api", "copy-object", "--bucket", bucket, "--key", "cli-dst", "--copy-source", f"{bucket}/cli-src",
               "--metadata-directive", "REPLACE", "--metadata", "new=yes", "--content-type", "text/plain")
    head = coffer.s3.head_object(Bucket=bucket, Key="cli-dst")
    assert head["Metadata"] == {"new": "yes"}
    assert head["ContentType"] == "text/plain"


def test_copy_missing_source(coffer, bucket):
    with pytest.raises(ClientError) as error:
        coffer.s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nope"})
    assert error_of(error) == (404, "NoSuchKey")


def test_delete_objects(coffer, bucket):
    s3 = coffer.s3
    for key in ("d/1", "d/2", "d/3", "keep"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    reply = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/1"}, {"Key": "d/2"}, {"Key": "missing"}]})
    assert sorted(d["Key"] for d in reply["Deleted"]) == ["d/1", "d/2", "missing"]
    assert reply.get("Errors", []) == []
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}], "Quiet": True})
    assert quiet.get("Deleted", []) == [] and quiet.get("Errors", []) == []
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]


def test_delete_object_and_missing_key(coffer, bucket):
    s3 = coffer.s3
    s3.put_object(Bucket=bucket, Key="bye", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="bye")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="bye")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key="bye")
    assert error_of(error) == (404, "NoSuchKey")


def test_overwrite_replaces_content(coffer, bucket):
    s3 = coffer.s3
    s3.put_object(Bucket=bucket, Key="over", Body=b"a" * 1000, Metadata={"v": "1"})
    s3.put_object(Bucket=bucket, Key="over", Body=b"b")
    reply = s3.get_object(Bucket=bucket, Key="over")
    assert reply["Body"].read() == b"b"
    assert reply["Metadata"] == {}


# ---- checksums -------------------------------------------------------------------------------------------------

def test_default_crc32_is_stored_and_returned(coffer, bucket):
    s3 = coffer.s3
    reply = s3.put_object(Bucket=bucket, Key="crc", Body=BODY)  # botocore sends x-amz-checksum-crc32 by default
    assert reply["ChecksumCRC32"] == crc32_b64(BODY)
    got = s3.get_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc32_b64(BODY)
    assert got["Body"].read() == BODY
    head = s3.head_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(BODY)
    assert "ChecksumCRC32" not in s3.head_object(Bucket=bucket, Key="crc"), "only returned when asked for"


def test_wrong_crc32_is_bad_digest_and_nothing_stored(coffer, bucket):
    s3 = coffer.s3
    wrong = crc32_b64(b"something else")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="bad-crc", Body=BODY, ChecksumCRC32=wrong)
    assert error_of(error) == (400, "BadDigest")
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key="bad-crc")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # a failed overwrite leaves the previous version intact
    s3.put_object(Bucket=bucket, Key="bad-crc", Body=b"good")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="bad-crc", Body=BODY, ChecksumCRC32=wrong)
    assert error_of(error) == (400, "BadDigest")
    assert s3.get_object(Bucket=bucket, Key="bad-crc")["Body"].read() == b"good"


@pytest.mark.parametrize("algorithm", ["CRC32C", "SHA1", "SHA256"])
def test_other_checksum_algorithms(coffer, bucket, algorithm):
    s3 = coffer.s3
    key = f"sum-{algorithm}"
    reply = s3.put_object(Bucket=bucket, Key=key, Body=BODY, ChecksumAlgorithm=algorithm)
    value = reply[f"Checksum{algorithm}"]
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == value
    assert got["Body"].read() == BODY
    if algorithm == "SHA256":
        assert base64.b64decode(value) == hashlib.sha256(BODY).digest()


def test_wrong_content_md5_is_bad_digest(coffer, bucket):
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as error:
        coffer.s3.put_object(Bucket=bucket, Key="bad-md5", Body=BODY, ContentMD5=wrong)
    assert error_of(error) == (400, "BadDigest")
    with pytest.raises(ClientError):
        coffer.s3.head_object(Bucket=bucket, Key="bad-md5")


def test_malformed_content_md5_is_invalid_digest(coffer, bucket):
    with pytest.raises(ClientError) as error:
        coffer.s3.put_object(Bucket=bucket, Key="bad-md5", Body=BODY, ContentMD5="not-base64!")
    assert error_of(error) == (400, "InvalidDigest")


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# botocore sends DeleteObjects with a CRC32 of its body; the hook replaces what it computed before signing.
CHECKSUM_HEADERS = ("x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm", "Content-MD5")


@pytest.mark.parametrize("header, value, code", [
    ("Content-MD5", md5_b64(b"another body"), "BadDigest"),
    ("x-amz-checksum-crc32", crc32_b64(b"another body"), "BadDigest"),
    ("Content-MD5", "", "InvalidDigest"),
], ids=["wrong-content-md5", "wrong-crc32", "empty-content-md5"])
def test_delete_objects_with_a_wrong_digest_deletes_nothing(coffer, bucket, header, value, code):
    s3 = coffer.s3
    s3.put_object(Bucket=bucket, Key="kept", Body=b"k")
    with extra_headers(s3, "DeleteObjects", {header: value}, drop=CHECKSUM_HEADERS):
        with pytest.raises(ClientError) as error:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "kept"}]})
    assert error_of(error) == (400, code)
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"k"


def test_delete_objects_with_the_right_content_md5_deletes(coffer, bucket):
    """What clients that send Content-MD5 instead of a CRC32 (botocore before 1.36) get."""
    s3 = coffer.s3
    s3.put_object(Bucket=bucket, Key="gone", Body=b"g")

    def content_md5_only(request, **_):
        for name in CHECKSUM_HEADERS:
            del request.headers[name]
        request.headers["Content-MD5"] = md5_b64(request.body)

    s3.meta.events.register("before-sign.s3.DeleteObjects", content_md5_only)
    try:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "gone"}]})
    finally:
        s3.meta.events.unregister("before-sign.s3.DeleteObjects", content_md5_only)
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_empty_content_md5_on_put_is_invalid_digest(coffer, bucket):
    with extra_headers(coffer.s3, "PutObject", {"Content-MD5": ""}):
        with pytest.raises(ClientError) as error:
            coffer.s3.put_object(Bucket=bucket, Key="empty-md5", Body=BODY)
    assert error_of(error) == (400, "InvalidDigest")
    with pytest.raises(ClientError):
        coffer.s3.head_object(Bucket=bucket, Key="empty-md5")


def test_wrong_part_checksum_is_bad_digest(coffer, bucket):
    s3 = coffer.s3
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp-crc", ChecksumAlgorithm="CRC32")["UploadId"]
    with pytest.raises(ClientError) as error:
        s3.upload_part(Bucket=bucket, Key="mp-crc", UploadId=upload_id, PartNumber=1, Body=BODY,
                       ChecksumCRC32=crc32_b64(b"nope"))
    assert error_of(error) == (400, "BadDigest")
    assert s3.list_parts(Bucket=bucket, Key="mp-crc", UploadId=upload_id).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="mp-crc", UploadId=upload_id)
