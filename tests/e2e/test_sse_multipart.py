"""Multipart uploads with server-side encryption.

SSE-C through `aws s3api create-multipart-upload / upload-part / complete-multipart-upload` (aws CLI v1 from .venv,
default CRC32 checksums) with 5 MiB parts on a default server and with 1 MiB parts on a server started with
`--min-part-size 1048576`, each with an unaligned last part. Every object is read back whole (aws s3api get-object,
aws s3 cp, boto3), by ranges at every part boundary ±1 and at 64 KiB package boundaries ±1, and by partNumber.
Parts are encrypted independently, so they may be uploaded out of order, concurrently and replaced; SSE-S3 and
SSE-KMS multipart uploads follow the same rules.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from harness import CofferServer, sha256_file, unique_name
from sse_helpers import (PACKAGE, MiB, CustomerKey, Sse, create_kms_key, etag_of, random_bytes, running_server,
                         sha256)

LAYOUTS = {
    # part sizes; the last one is never a multiple of the 64 KiB package size
    "5MiB-parts": [5 * MiB, 5 * MiB, 1_234_567],
    "1MiB-parts": [MiB, MiB + 65_537, MiB, 333_333],
}
# parts are uploaded in this order (1-based part numbers)
UPLOAD_ORDER = {"5MiB-parts": [1, 2, 3], "1MiB-parts": [3, 1, 4, 2]}


@pytest.fixture(scope="module")
def small_parts_server(tmp_path_factory) -> CofferServer:
    """Parts down to 1 MiB are accepted (the last part may be smaller still)."""
    with running_server(tmp_path_factory, args=["--min-part-size", str(MiB)]) as server:
        yield server


def server_for(layout: str, coffer: CofferServer, small_parts_server: CofferServer) -> CofferServer:
    return coffer if layout == "5MiB-parts" else small_parts_server


def s3api(server: CofferServer, *args: str) -> dict:
    return json.loads(server.aws("s3api", *args).stdout or "{}")


def offsets(sizes: list[int]) -> list[int]:
    """Start offset of every part, then the total size."""
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    return starts


def interesting_points(sizes: list[int]) -> list[int]:
    """Part boundaries, and 64 KiB package boundaries counted from each part's start (every part is sealed on
    its own) and from the object's start."""
    starts = offsets(sizes)
    total = starts[-1]
    points = set(starts[1:-1])
    for start, size in zip(starts, sizes):
        last_package = (size - 1) // PACKAGE
        points.update(start + k * PACKAGE for k in {1, 2, last_package} if 0 < k * PACKAGE < size)
    points.update(k * PACKAGE for k in (1, 17) if k * PACKAGE < total)
    return sorted(points)


def ranges_around(points: list[int], total: int) -> list[tuple[int, int]]:
    """(first, last) byte ranges starting and ending at each point ±1: one byte, a few bytes, a package and more."""
    ranges = set()
    for point in points:
        for first in (point - 1, point, point + 1):
            for length in (1, 3, PACKAGE + 3):
                last = first + length - 1
                if 0 <= first and last < total:
                    ranges.add((first, last))
        for last in (point - 1, point, point + 1):
            first = max(0, point - PACKAGE - 2)
            if last < total:
                ranges.add((first, last))
    return sorted(ranges)


def check_ranges(s3, bucket: str, key: str, data: bytes, sizes: list[int], read_args: dict) -> int:
    total = len(data)
    starts = offsets(sizes)
    ranges = ranges_around(interesting_points(sizes), total)
    ranges += [(0, total - 1), (starts[1] - 1, starts[-2] + 1), (total - 1, total - 1)]
    for first, last in ranges:
        reply = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", **read_args)
        body = reply["Body"].read()
        assert reply["ResponseMetadata"]["HTTPStatusCode"] == 206, (first, last)
        assert reply["ContentRange"] == f"bytes {first}-{last}/{total}", (first, last)
        assert reply["ContentLength"] == last - first + 1, (first, last)
        assert body == data[first:last + 1], f"bytes={first}-{last}: wrong content"
    # open-ended and suffix ranges, and one that runs past the end (clamped)
    for header, first in ((f"bytes={starts[-2]}-", starts[-2]), (f"bytes=-{sizes[-1] + 1}", total - sizes[-1] - 1),
                          (f"bytes={total - 10}-{total + 1000}", total - 10)):
        reply = s3.get_object(Bucket=bucket, Key=key, Range=header, **read_args)
        assert reply["Body"].read() == data[first:], header
        assert reply["ContentRange"] == f"bytes {first}-{total - 1}/{total}", header
    return len(ranges)


def check_part_numbers(s3, bucket: str, key: str, data: bytes, sizes: list[int], read_args: dict) -> None:
    starts = offsets(sizes)
    total = len(data)
    for number, size in enumerate(sizes, start=1):
        first, last = starts[number - 1], starts[number] - 1
        reply = s3.get_object(Bucket=bucket, Key=key, PartNumber=number, **read_args)
        assert reply["Body"].read() == data[first:last + 1], f"part {number}"
        assert reply["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert reply["ContentRange"] == f"bytes {first}-{last}/{total}"
        assert reply["ContentLength"] == size
        assert reply["PartsCount"] == len(sizes)
        head = s3.head_object(Bucket=bucket, Key=key, PartNumber=number, **read_args)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert head["ContentRange"] == reply["ContentRange"]
        assert head["ContentLength"] == size
    with pytest.raises(ClientError) as beyond:
        s3.get_object(Bucket=bucket, Key=key, PartNumber=len(sizes) + 1, **read_args)
    assert beyond.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert beyond.value.response["Error"]["Code"] == "InvalidPartNumber"


@pytest.mark.parametrize("layout", LAYOUTS.keys())
def test_sse_c_multipart_with_aws_s3api(coffer, small_parts_server, tmp_path, layout):
    server = server_for(layout, coffer, small_parts_server)
    sizes = LAYOUTS[layout]
    data = random_bytes(sum(sizes), seed=len(layout))
    customer = CustomerKey.generate()
    sse = Sse.c(customer)
    bucket, key = unique_name("sse-mpu"), f"sse-c/{layout}.bin"
    server.s3.create_bucket(Bucket=bucket)
    starts = offsets(sizes)

    created = s3api(server, "create-multipart-upload", "--bucket", bucket, "--key", key, *customer.cli_s3api())
    assert created["SSECustomerAlgorithm"] == "AES256" and created["SSECustomerKeyMD5"] == customer.md5_b64
    upload_id = created["UploadId"]
    etags = {}
    for number in UPLOAD_ORDER[layout]:
        part = tmp_path / f"part-{number}"
        part.write_bytes(data[starts[number - 1]:starts[number]])
        reply = s3api(server, "upload-part", "--bucket", bucket, "--key", key, "--upload-id", upload_id,
                      "--part-number", str(number), "--body", str(part), *customer.cli_s3api())
        assert reply["SSECustomerAlgorithm"] == "AES256" and reply["SSECustomerKeyMD5"] == customer.md5_b64
        etags[number] = reply["ETag"]

    listed = s3api(server, "list-parts", "--bucket", bucket, "--key", key, "--upload-id", upload_id)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == list(enumerate(sizes, start=1)), \
        "part sizes are listed in plaintext bytes"
    manifest = tmp_path / "parts.json"
    manifest.write_text(json.dumps({"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]}))
    done = s3api(server, "complete-multipart-upload", "--bucket", bucket, "--key", key, "--upload-id", upload_id,
                 "--multipart-upload", f"file://{manifest}")
    assert etag_of(done).endswith(f"-{len(sizes)}"), done

    head = server.s3.head_object(Bucket=bucket, Key=key, **sse.read_args())
    sse.check_echo(head)
    assert head["ContentLength"] == len(data)
    assert etag_of(head) == etag_of(done)

    # whole: aws s3api get-object, aws s3 cp (ranged parallel GETs above 8 MiB), boto3
    whole = tmp_path / "whole-s3api"
    got = s3api(server, "get-object", "--bucket", bucket, "--key", key, *customer.cli_s3api(), str(whole))
    assert got["SSECustomerKeyMD5"] == customer.md5_b64 and got["ContentLength"] == len(data)
    assert sha256_file(whole) == sha256(data)
    copied = tmp_path / "whole-cp"
    server.aws("s3", "cp", f"s3://{bucket}/{key}", str(copied), *customer.cli_cp())
    assert sha256_file(copied) == sha256(data)
    reply = server.s3.get_object(Bucket=bucket, Key=key, **sse.read_args())
    sse.check_echo(reply)
    assert reply["Body"].read() == data

    assert check_ranges(server.s3, bucket, key, data, sizes, sse.read_args()) > 50
    check_part_numbers(server.s3, bucket, key, data, sizes, sse.read_args())
    second = tmp_path / "part-2-download"
    s3api(server, "get-object", "--bucket", bucket, "--key", key, "--part-number", "2", *customer.cli_s3api(),
          str(second))
    assert second.read_bytes() == data[starts[1]:starts[2]]
    ranged = tmp_path / "range-s3api"
    first, last = starts[1] - 1, starts[1] + 1
    s3api(server, "get-object", "--bucket", bucket, "--key", key, "--range", f"bytes={first}-{last}",
          *customer.cli_s3api(), str(ranged))
    assert ranged.read_bytes() == data[first:last + 1]


def test_sse_c_parts_uploaded_concurrently_and_replaced(small_parts_server):
    """boto3 (default settings) uploading parts from four threads at once; one part is uploaded twice and the
    second upload wins."""
    server = small_parts_server
    s3 = server.s3
    sizes = [MiB + 1, MiB, MiB + PACKAGE, 7]
    data = random_bytes(sum(sizes), seed=7)
    starts = offsets(sizes)
    sse = Sse.c()
    bucket, key = unique_name("sse-mpu"), "concurrent.bin"
    s3.create_bucket(Bucket=bucket)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **sse.write_args())["UploadId"]
    stale = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"stale" * 1000,
                           **sse.read_args())
    sse.check_echo(stale)

    def upload(number: int) -> dict:
        client = server.s3_client()  # one client per thread
        reply = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                   Body=data[starts[number - 1]:starts[number]], **sse.read_args())
        return {"PartNumber": number, "ETag": reply["ETag"]}

    with ThreadPoolExecutor(max_workers=4) as pool:
        parts = list(pool.map(upload, [4, 3, 2, 1]))
    parts.sort(key=lambda part: part["PartNumber"])
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    reply = s3.get_object(Bucket=bucket, Key=key, **sse.read_args())
    assert reply["Body"].read() == data
    check_part_numbers(s3, bucket, key, data, sizes, sse.read_args())


@pytest.mark.parametrize("mode", ["sse-s3", "sse-kms"])
def test_kms_backed_multipart_small_parts(small_parts_server, mode):
    """SSE-S3 and SSE-KMS multipart (boto3) with 1 MiB parts uploaded out of order and an unaligned last part;
    every answer echoes the encryption, and ranges at every part boundary ±1 read back exactly."""
    server = small_parts_server
    s3 = server.s3
    sizes = [MiB, MiB + 3, 100_001]
    data = random_bytes(sum(sizes), seed=11)
    starts = offsets(sizes)
    sse = Sse.s3() if mode == "sse-s3" else Sse.kms(create_kms_key(server))
    bucket, key = unique_name("sse-mpu"), f"{mode}.bin"
    s3.create_bucket(Bucket=bucket)

    created = s3.create_multipart_upload(Bucket=bucket, Key=key, **sse.write_args())
    sse.check_echo(created)
    upload_id = created["UploadId"]
    parts = []
    for number in (2, 3, 1):
        reply = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                               Body=data[starts[number - 1]:starts[number]])
        sse.check_echo(reply)
        parts.append({"PartNumber": number, "ETag": reply["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": sorted(parts, key=lambda p: p["PartNumber"])})
    sse.check_echo(done)
    assert etag_of(done).endswith("-3")

    head = s3.head_object(Bucket=bucket, Key=key)
    sse.check_echo(head)
    assert head["ContentLength"] == len(data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    for boundary in starts[1:-1]:
        for first in (boundary - 1, boundary, boundary + 1):
            for last in (first, first + 1, boundary + 1):
                if last >= first:
                    body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")["Body"].read()
                    assert body == data[first:last + 1], (first, last)
    check_part_numbers(s3, bucket, key, data, sizes, {})


def test_aws_s3_cp_multipart_download_with_sse_c_key(coffer, tmp_path, files):
    """aws s3 cp uploads 20 MiB with SSE-C in three parts and downloads it with ranged GETs that cross the part
    and package boundaries."""
    customer = CustomerKey.generate()
    bucket = unique_name("sse-mpu")
    coffer.s3.create_bucket(Bucket=bucket)
    source = files(20 * MiB + 5)
    coffer.aws("s3", "cp", str(source), f"s3://{bucket}/cp.bin", *customer.cli_cp())
    head = coffer.s3.head_object(Bucket=bucket, Key="cp.bin", **customer.boto())
    assert etag_of(head).endswith("-3") and head["ContentLength"] == 20 * MiB + 5
    target = tmp_path / "cp.bin"
    coffer.aws("s3", "cp", f"s3://{bucket}/cp.bin", str(target), *customer.cli_cp())
    assert sha256_file(target) == sha256_file(Path(source))
