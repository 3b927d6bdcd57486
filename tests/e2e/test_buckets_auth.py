"""Buckets (names, reserved names, lifecycle) and request authentication (SigV4 headers and presigned URLs)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from harness import Credentials, awscurl_status, unique_name


def error_of(excinfo):
    response = excinfo.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# ---- buckets -----------------------------------------------------------------------------------------------------

def test_bucket_lifecycle(coffer):
    s3 = coffer.s3
    name = unique_name()
    s3.create_bucket(Bucket=name)
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_bucket_location(Bucket=name).get("LocationConstraint") in (None, "")
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket=name)
    assert error_of(error) == (409, "BucketAlreadyOwnedByYou")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as error:
        s3.head_bucket(Bucket=name)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as error:
        s3.delete_bucket(Bucket=name)
    assert error_of(error) == (404, "NoSuchBucket")


def test_list_buckets_sorted(coffer):
    names = [unique_name("s") for _ in range(3)]
    for name in names:
        coffer.s3.create_bucket(Bucket=name)
    listed = [b["Name"] for b in coffer.s3.list_buckets()["Buckets"]]
    assert listed == sorted(listed)
    assert set(names) <= set(listed)


def test_delete_non_empty_bucket(coffer, bucket):
    coffer.s3.put_object(Bucket=bucket, Key="x", Body=b"x")
    with pytest.raises(ClientError) as error:
        coffer.s3.delete_bucket(Bucket=bucket)
    assert error_of(error) == (409, "BucketNotEmpty")
    coffer.s3.delete_object(Bucket=bucket, Key="x")
    coffer.s3.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize("name", ["coffer", "rustfs", "minio"])
def test_reserved_bucket_names(coffer, name):
    with pytest.raises(ClientError) as error:
        coffer.s3.create_bucket(Bucket=name)
    assert error_of(error) == (400, "InvalidBucketName")
    result = coffer.aws("s3", "mb", f"s3://{name}", check=False)
    assert result.returncode != 0 and "InvalidBucketName" in result.stderr
    assert name not in [b["Name"] for b in coffer.s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("name", ["UpperCase", "under_score", "-leading-hyphen", "trailing-hyphen-", "two..dots",
                                  "192.168.5.4", "x" * 64, "ab"])
def test_invalid_bucket_names(coffer, name):
    with pytest.raises(ClientError) as error:
        coffer.s3.create_bucket(Bucket=name)
    assert error_of(error) == (400, "InvalidBucketName")


def test_object_in_missing_bucket(coffer):
    with pytest.raises(ClientError) as error:
        coffer.s3.put_object(Bucket="missing-bucket-e2e", Key="k", Body=b"x")
    assert error_of(error) == (404, "NoSuchBucket")


# ---- authentication ----------------------------------------------------------------------------------------------

def test_wrong_secret_is_signature_does_not_match(coffer, bucket, files):
    wrong = Credentials(coffer.root.access_key, "not-the-secret")
    with pytest.raises(ClientError) as error:
        coffer.s3_client(wrong).list_objects_v2(Bucket=bucket)
    assert error_of(error) == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError) as error:
        coffer.s3_client(wrong).put_object(Bucket=bucket, Key="sneaky", Body=b"x")
    assert error_of(error) == (403, "SignatureDoesNotMatch")
    result = coffer.aws("s3", "cp", str(files(1)), f"s3://{bucket}/sneaky", creds=wrong, check=False)
    assert result.returncode != 0 and "SignatureDoesNotMatch" in result.stderr
    assert coffer.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_unknown_access_key(coffer, bucket):
    stranger = Credentials("nobody-knows-me", "whatever-secret")
    with pytest.raises(ClientError) as error:
        coffer.s3_client(stranger).list_objects_v2(Bucket=bucket)
    assert error_of(error) == (403, "InvalidAccessKeyId")
    result = coffer.aws("s3", "ls", creds=stranger, check=False)
    assert result.returncode != 0 and "InvalidAccessKeyId" in result.stderr


def test_anonymous_request_refused(coffer, bucket):
    coffer.s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    status, body = http_get(f"{coffer.endpoint}/{bucket}/private")
    assert status == 403
    assert b"AccessDenied" in body
    status, _ = http_get(f"{coffer.endpoint}/")
    assert status == 403


def test_presigned_get_and_put(coffer, bucket):
    s3 = coffer.s3
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=300)
    assert http_get(url) == (200, b"presigned body")

    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    status, body = http_get(tampered)
    assert status == 403 and b"SignatureDoesNotMatch" in body

    other_key = url.replace("/shared?", "/other?")
    status, _ = http_get(other_key)
    assert status == 403

    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"}, ExpiresIn=300)
    request = urllib.request.Request(put_url, data=b"via presigned put", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"via presigned put"


def test_awscurl_signed_requests(coffer, bucket):
    coffer.s3.put_object(Bucket=bucket, Key="curl", Body=b"fetched with awscurl")
    result = coffer.awscurl(f"/{bucket}/curl")
    assert awscurl_status(result) == 200
    assert result.stdout == "fetched with awscurl"

    listing = coffer.awscurl("/")
    assert awscurl_status(listing) == 200 and f"<Name>{bucket}</Name>" in listing.stdout

    denied = coffer.awscurl("/", creds=Credentials(coffer.root.access_key, "wrong"), check=False)
    assert awscurl_status(denied) == 403 and "SignatureDoesNotMatch" in denied.stdout
