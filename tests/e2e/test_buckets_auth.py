"""Buckets (names, reserved names, lifecycle) and request authentication (SigV4 headers and presigned URLs)."""

from __future__ import annotations

import datetime
import http.client
import urllib.error
import urllib.parse
import urllib.request

import pytest
import requests
from botocore.exceptions import ClientError

from harness import Credentials, awscurl_status, signed_chunked_put, unique_name


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


def test_a_refused_upload_closes_the_connection_so_the_next_request_arrives_intact(coffer):
    # botocore sends `Expect: 100-continue` and, answered before any `100 Continue`, keeps the body and reuses the
    # connection. The server used to take the next request's first byte for the 1-byte body it was still waiting
    # for: the next PUT arrived as `UT` and failed with SignatureDoesNotMatch.
    for _ in range(20):
        with pytest.raises(ClientError) as error:
            coffer.s3.put_object(Bucket="missing-bucket-e2e", Key="k", Body=b"x")
        assert error_of(error) == (404, "NoSuchBucket")
        assert error.value.response["ResponseMetadata"]["HTTPHeaders"].get("connection") == "close"
        bucket = unique_name()
        coffer.s3.create_bucket(Bucket=bucket)
        coffer.s3.delete_bucket(Bucket=bucket)


# ---- authentication ----------------------------------------------------------------------------------------------

def test_wrong_secret_is_signature_does_not_match(coffer, bucket, files):
    wrong = Credentials(coffer.root.access_key, "not-the-secret")
    with pytest.raises(ClientError) as error:
        coffer.s3_client(wrong).list_objects_v2(Bucket=bucket)
    assert error_of(error) == (403, "SignatureDoesNotMatch")
    # AWS's message, not an empty one (s3s raises this error with a code only)
    assert "does not match the signature you provided" in error.value.response["Error"]["Message"]
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
    assert error.value.response["Error"]["Message"], "an error answer with an empty message"
    result = coffer.aws("s3", "ls", creds=stranger, check=False)
    assert result.returncode != 0 and "InvalidAccessKeyId" in result.stderr


def test_anonymous_request_refused(coffer, bucket):
    coffer.s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    status, body = http_get(f"{coffer.endpoint}/{bucket}/private")
    assert status == 403
    assert b"AccessDenied" in body
    status, _ = http_get(f"{coffer.endpoint}/")
    assert status == 403


def tamper_signature(url: str) -> str:
    """Flip one character of the presigned URL's signature (SigV4 X-Amz-Signature or SigV2 Signature)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    changed = []
    for name, value in query:
        if name in ("X-Amz-Signature", "Signature"):
            value = ("0" if value[0] != "0" else "1") + value[1:]
        changed.append((name, value))
    assert changed != query, f"no signature in {url}"
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(changed)))


@pytest.mark.parametrize("signature_version", [None, "s3v4"], ids=["boto3-default", "s3v4"])
def test_presigned_get_and_put(coffer, bucket, signature_version):
    """boto3 presigns with its default (query-string SigV2 for S3 today) unless s3v4 is configured; both work."""
    s3 = coffer.s3_client(signature_version=signature_version) if signature_version else coffer.s3
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=300)
    if signature_version == "s3v4":
        assert "X-Amz-Signature=" in url
    assert http_get(url) == (200, b"presigned body")

    status, body = http_get(tamper_signature(url))
    assert status == 403 and b"SignatureDoesNotMatch" in body

    status, _ = http_get(url.replace("/shared?", "/other?"))
    assert status == 403

    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"}, ExpiresIn=300)
    # requests adds no Content-Type (SigV2 signs it; urllib would add one)
    assert requests.put(put_url, data=b"via presigned put", timeout=30).status_code == 200
    assert coffer.s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"via presigned put"


def test_expired_presigned_url(coffer, bucket, monkeypatch):
    """A URL signed a day ago for 60 seconds is refused (signing time is moved back instead of waiting)."""
    import botocore.auth
    import botocore.crt.auth  # botocore signs with awscrt when it is installed (awscli pulls it in)

    coffer.s3.put_object(Bucket=bucket, Key="old", Body=b"x")
    day_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    for module in (botocore.auth, botocore.crt.auth):
        monkeypatch.setattr(module, "get_current_datetime",
                            lambda remove_tzinfo=True: day_ago.replace(tzinfo=None) if remove_tzinfo else day_ago)
    s3 = coffer.s3_client(signature_version="s3v4")
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "old"}, ExpiresIn=60)
    status, body = http_get(expired)
    assert status == 403 and b"AccessDenied" in body, body


@pytest.mark.parametrize("expires_in", [604801, 30 * 24 * 3600], ids=["a-week-and-a-second", "30-days"])
def test_presigned_url_valid_for_more_than_a_week_is_refused(coffer, bucket, expires_in):
    """AWS allows 1 second to 7 days (604,800 s); botocore presigns any ExpiresIn it is given."""
    s3 = coffer.s3_client(signature_version="s3v4")
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned body")
    week = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=604800)
    assert http_get(week) == (200, b"presigned body")

    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=expires_in)
    assert f"X-Amz-Expires={expires_in}&" in url
    status, body = http_get(url)
    assert status == 400 and b"<Code>AuthorizationQueryParametersError</Code>" in body, (status, body)
    assert b"less than a week" in body, body


@pytest.mark.parametrize("expires", ["0", "-1", "soon"])
def test_presigned_url_expiry_below_one_second_or_not_a_number_is_refused(coffer, bucket, expires):
    """botocore will not presign these, so a valid URL's X-Amz-Expires is rewritten: the parameter is checked
    before the signature, as in AWS."""
    s3 = coffer.s3_client(signature_version="s3v4")
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=300)
    status, body = http_get(url.replace("X-Amz-Expires=300&", f"X-Amz-Expires={expires}&"))
    assert status == 400 and b"<Code>AuthorizationQueryParametersError</Code>" in body, (status, body)


def send_raw(server, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


CHUNKED_PAYLOAD = bytes(range(256)) * 600  # 153,600 bytes: two full 64 KiB chunks and a shorter one


def test_signed_aws_chunked_put(coffer, bucket):
    """A hand-signed STREAMING-AWS4-HMAC-SHA256-PAYLOAD upload is stored whole; a chunk whose data does not match
    its signature is refused."""
    path = f"/{bucket}/chunked"
    headers, body = signed_chunked_put(coffer.root, coffer.endpoint + path, CHUNKED_PAYLOAD, 64 * 1024)
    assert send_raw(coffer, "PUT", path, headers, body)[0] == 200
    assert coffer.s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == CHUNKED_PAYLOAD

    tampered = body.replace(CHUNKED_PAYLOAD[:16], b"X" * 16, 1)
    status, answer = send_raw(coffer, "PUT", f"/{bucket}/tampered", headers, tampered)
    assert status == 403 and b"SignatureDoesNotMatch" in answer, answer
    assert coffer.s3.list_objects_v2(Bucket=bucket, Prefix="tampered").get("KeyCount") == 0


def test_signed_aws_chunked_put_without_its_final_chunk_is_incomplete(coffer, bucket):
    """Every data chunk arrives, signed, but not the zero-length chunk that ends the body: 400 IncompleteBody, as in
    AWS, and the previous object stays."""
    coffer.s3.put_object(Bucket=bucket, Key="chunked", Body=b"before")
    path = f"/{bucket}/chunked"
    headers, body = signed_chunked_put(coffer.root, coffer.endpoint + path, CHUNKED_PAYLOAD, 64 * 1024,
                                       final_chunk=False)
    status, answer = send_raw(coffer, "PUT", path, headers, body)
    assert status == 400 and b"<Code>IncompleteBody</Code>" in answer, answer
    assert coffer.s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"before"


def test_awscurl_signed_requests(coffer, bucket):
    coffer.s3.put_object(Bucket=bucket, Key="curl", Body=b"fetched with awscurl")
    result = coffer.awscurl(f"/{bucket}/curl")
    assert awscurl_status(result) == 200
    assert result.stdout == "fetched with awscurl"

    listing = coffer.awscurl("/")
    assert awscurl_status(listing) == 200 and f"<Name>{bucket}</Name>" in listing.stdout

    denied = coffer.awscurl("/", creds=Credentials(coffer.root.access_key, "wrong"), check=False)
    assert awscurl_status(denied) == 403 and "SignatureDoesNotMatch" in denied.stdout
