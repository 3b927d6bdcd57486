"""Multipart uploads driven step by step with `aws s3api` (default CRC32 checksums) and boto3.

Covers 5 MiB parts with an unaligned last part, the multipart ETag, EntityTooSmall, partNumber GET, ListParts,
ListMultipartUploads, AbortMultipartUpload and UploadPartCopy with source ranges.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from botocore.exceptions import ClientError

from harness import sha256_file, sign_unsigned_payload

MiB = 1 << 20
PART = 5 * MiB


def split(source, directory, sizes):
    """Write consecutive slices of `source` with the given sizes to files; returns their paths."""
    paths = []
    with open(source, "rb") as handle:
        for number, size in enumerate(sizes, start=1):
            path = directory / f"part-{number}"
            path.write_bytes(handle.read(size))
            paths.append(path)
    return paths


def multipart_etag(paths):
    digests = b"".join(hashlib.md5(path.read_bytes()).digest() for path in paths)
    return f"{hashlib.md5(digests).hexdigest()}-{len(paths)}"


def s3api(coffer, *args, **kwargs):
    return json.loads(coffer.aws("s3api", *args, **kwargs).stdout or "{}")


def test_s3api_multipart_unaligned_last_part(coffer, bucket, files, tmp_path):
    size = 3 * PART + 12345
    source = files(size)
    parts = split(source, tmp_path, [PART, PART, PART, 12345])
    key = "multi/part.bin"

    upload_id = s3api(coffer, "create-multipart-upload", "--bucket", bucket, "--key", key,
                      "--content-type", "application/x-test", "--metadata", "origin=e2e")["UploadId"]
    etags = []
    for number, path in enumerate(parts, start=1):
        reply = s3api(coffer, "upload-part", "--bucket", bucket, "--key", key, "--upload-id", upload_id,
                      "--part-number", str(number), "--body", str(path))
        assert reply["ETag"].strip('"') == hashlib.md5(path.read_bytes()).hexdigest()
        etags.append(reply["ETag"])

    listed = s3api(coffer, "list-parts", "--bucket", bucket, "--key", key, "--upload-id", upload_id)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, PART), (2, PART), (3, PART), (4, 12345)]
    uploads = s3api(coffer, "list-multipart-uploads", "--bucket", bucket)
    assert [(u["Key"], u["UploadId"]) for u in uploads.get("Uploads", [])] == [(key, upload_id)]
    assert coffer.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, "an upload in progress is not an object"

    manifest = tmp_path / "parts.json"
    manifest.write_text(json.dumps({"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]}))
    done = s3api(coffer, "complete-multipart-upload", "--bucket", bucket, "--key", key, "--upload-id", upload_id,
                 "--multipart-upload", f"file://{manifest}")
    assert done["ETag"].strip('"') == multipart_etag(parts)

    head = s3api(coffer, "head-object", "--bucket", bucket, "--key", key)
    assert head["ContentLength"] == size
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"origin": "e2e"}
    assert head["ETag"].strip('"') == multipart_etag(parts)

    target = tmp_path / "download.bin"
    s3api(coffer, "get-object", "--bucket", bucket, "--key", key, str(target))
    assert sha256_file(target) == sha256_file(source)
    assert s3api(coffer, "list-multipart-uploads", "--bucket", bucket).get("Uploads", []) == []


def test_entity_too_small_for_non_last_part(coffer, bucket):
    s3 = coffer.s3
    key = "too-small"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number in (1, 2):
        reply = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=b"x" * MiB)
        parts.append({"PartNumber": number, "ETag": reply["ETag"]})
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert error.value.response["Error"]["Code"] == "EntityTooSmall"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key=key)
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # the upload survives a failed completion and can still be aborted
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_complete_rejects_wrong_etag_and_bad_order(coffer, bucket):
    s3 = coffer.s3
    key = "bad-complete"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=bytes([n]) * PART)["ETag"]
             for n in (1, 2)]
    wrong = [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}]
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": wrong})
    assert error.value.response["Error"]["Code"] == "InvalidPart"
    reversed_order = [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": reversed_order})
    assert error.value.response["Error"]["Code"] == "InvalidPartOrder"
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_abort_removes_upload(coffer, bucket):
    s3 = coffer.s3
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="aborted", UploadId=upload_id, PartNumber=1, Body=b"data")
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as error:
        s3.list_parts(Bucket=bucket, Key="aborted", UploadId=upload_id)
    assert error.value.response["Error"]["Code"] == "NoSuchUpload"
    with pytest.raises(ClientError) as error:
        s3.upload_part(Bucket=bucket, Key="aborted", UploadId=upload_id, PartNumber=2, Body=b"late")
    assert error.value.response["Error"]["Code"] == "NoSuchUpload"


def test_part_number_get(coffer, bucket):
    s3 = coffer.s3
    key = "by-part"
    bodies = [bytes([65 + n]) * PART for n in range(2)] + [b"tail-bytes"]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                                                      Body=body)["ETag"]}
             for n, body in enumerate(bodies, start=1)]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})

    offset = 0
    total = sum(map(len, bodies))
    for number, body in enumerate(bodies, start=1):
        reply = s3.get_object(Bucket=bucket, Key=key, PartNumber=number)
        assert reply["Body"].read() == body
        assert reply["ContentLength"] == len(body)
        assert reply["ContentRange"] == f"bytes {offset}-{offset + len(body) - 1}/{total}"
        assert reply["PartsCount"] == 3
        assert reply["ResponseMetadata"]["HTTPStatusCode"] == 206
        offset += len(body)
    head = s3.head_object(Bucket=bucket, Key=key, PartNumber=2)
    assert head["ContentLength"] == PART

    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=bucket, Key=key, PartNumber=4)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert error.value.response["Error"]["Code"] == "InvalidPartNumber"


def test_upload_part_copy_with_ranges(coffer, bucket, files, tmp_path):
    s3 = coffer.s3
    source = files(12 * MiB)
    s3.upload_file(str(source), bucket, "copy-source")  # boto3's transfer manager, default settings
    data = source.read_bytes()

    key = "assembled"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    ranges = [(7 * MiB, 12 * MiB - 1), (0, 5 * MiB - 1), (100, 199)]  # out of order, last one tiny
    parts = []
    for number, (first, last) in enumerate(ranges, start=1):
        reply = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                    CopySource={"Bucket": bucket, "Key": "copy-source"},
                                    CopySourceRange=f"bytes={first}-{last}")
        expected = data[first:last + 1]
        assert reply["CopyPartResult"]["ETag"].strip('"') == hashlib.md5(expected).hexdigest()
        parts.append({"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == b"".join(data[first:last + 1] for first, last in ranges)


def test_part_overwrite_keeps_latest(coffer, bucket):
    s3 = coffer.s3
    key = "rewritten-part"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"first version")
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"second")["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, 6, etag)]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"second"


def test_malformed_complete_xml_is_400_with_a_message(coffer, bucket):
    """s3s rejects the body with a bare code; the client still gets AWS's message."""
    upload_id = coffer.s3.create_multipart_upload(Bucket=bucket, Key="mx")["UploadId"]
    body = b"<CompleteMultipartUpload><Part>"
    url = f"{coffer.endpoint}/{bucket}/mx?uploadId={upload_id}"
    headers = sign_unsigned_payload(coffer.root, "POST", url, {"Content-Length": str(len(body))})
    reply = requests.post(url, data=body, headers=headers, timeout=30)
    assert reply.status_code == 400, reply.text
    assert "<Code>MalformedXML</Code><Message>The XML you provided was not well-formed" in reply.text, reply.text
    assert int(reply.headers["Content-Length"]) == len(reply.content)
    assert coffer.s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["UploadId"] == upload_id
