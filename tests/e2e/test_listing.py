"""ListObjectsV2 and V1: prefix, delimiter, start-after, max-keys and pagination with boto3's paginators."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

KEYS = sorted(
    [f"logs/2024/{day:02d}.log" for day in range(1, 13)]
    + [f"logs/2025/{day:02d}.log" for day in range(1, 6)]
    + [f"img/{n}.png" for n in range(7)]
    + ["readme", "z-last", "logs/top.log", "a b/space key", "ünïcødé/ключ"]
)


@pytest.fixture
def filled(coffer, bucket):
    for key in KEYS:
        coffer.s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def utf8_sorted(keys):
    return sorted(keys, key=lambda k: k.encode())


def test_list_all_sorted_with_sizes_and_etags(coffer, filled):
    reply = coffer.s3.list_objects_v2(Bucket=filled)
    assert reply["KeyCount"] == len(KEYS)
    assert not reply["IsTruncated"]
    assert [o["Key"] for o in reply["Contents"]] == utf8_sorted(KEYS)
    for entry in reply["Contents"]:
        assert entry["Size"] == len(entry["Key"].encode())
        assert entry["ETag"].startswith('"') and len(entry["ETag"]) == 34


def test_prefix(coffer, filled):
    reply = coffer.s3.list_objects_v2(Bucket=filled, Prefix="logs/2025/")
    assert [o["Key"] for o in reply["Contents"]] == [f"logs/2025/{d:02d}.log" for d in range(1, 6)]
    assert coffer.s3.list_objects_v2(Bucket=filled, Prefix="nothing-here")["KeyCount"] == 0


def test_delimiter(coffer, filled):
    reply = coffer.s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [p["Prefix"] for p in reply["CommonPrefixes"]] == utf8_sorted(["a b/", "img/", "logs/", "ünïcødé/"])
    assert [o["Key"] for o in reply["Contents"]] == ["readme", "z-last"]

    nested = coffer.s3.list_objects_v2(Bucket=filled, Delimiter="/", Prefix="logs/")
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["logs/2024/", "logs/2025/"]
    assert [o["Key"] for o in nested["Contents"]] == ["logs/top.log"]


def test_non_slash_delimiter(coffer, filled):
    reply = coffer.s3.list_objects_v2(Bucket=filled, Prefix="logs/2024/", Delimiter=".")
    assert [p["Prefix"] for p in reply["CommonPrefixes"]] == [f"logs/2024/{d:02d}." for d in range(1, 13)]
    assert reply.get("Contents", []) == []


def test_start_after(coffer, filled):
    reply = coffer.s3.list_objects_v2(Bucket=filled, StartAfter="logs/2025/03.log")
    expected = [k for k in utf8_sorted(KEYS) if k.encode() > b"logs/2025/03.log"]
    assert [o["Key"] for o in reply["Contents"]] == expected


def test_v2_pagination(coffer, filled):
    paginator = coffer.s3.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=filled, PaginationConfig={"PageSize": 5}))
    assert len(pages) == -(-len(KEYS) // 5)
    assert all(p["KeyCount"] <= 5 for p in pages)
    assert all(p["IsTruncated"] for p in pages[:-1]) and not pages[-1]["IsTruncated"]
    assert [o["Key"] for p in pages for o in p["Contents"]] == utf8_sorted(KEYS)


def test_v2_pagination_with_delimiter(coffer, filled):
    """Common prefixes count toward max-keys and are never repeated across pages."""
    paginator = coffer.s3.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=filled, Delimiter="/", PaginationConfig={"PageSize": 2}))
    prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert prefixes == utf8_sorted(["a b/", "img/", "logs/", "ünïcødé/"])
    assert keys == ["readme", "z-last"]
    assert all(len(page.get("CommonPrefixes", [])) + len(page.get("Contents", [])) <= 2 for page in pages)


def test_v1_pagination_with_marker(coffer, filled):
    paginator = coffer.s3.get_paginator("list_objects")
    pages = list(paginator.paginate(Bucket=filled, PaginationConfig={"PageSize": 4}))
    assert len(pages) == -(-len(KEYS) // 4)
    assert [o["Key"] for p in pages for o in p["Contents"]] == utf8_sorted(KEYS)

    marker = coffer.s3.list_objects(Bucket=filled, Marker="readme")
    assert [o["Key"] for o in marker["Contents"]] == [k for k in utf8_sorted(KEYS) if k.encode() > b"readme"]


def test_max_keys_zero_and_cli(coffer, filled):
    reply = coffer.s3.list_objects_v2(Bucket=filled, MaxKeys=0)
    assert reply["KeyCount"] == 0
    listing = coffer.aws("s3api", "list-objects-v2", "--bucket", filled, "--prefix", "img/",
                         "--query", "Contents[].Key", "--output", "text").stdout.split()
    assert listing == [f"img/{n}.png" for n in range(7)]


def test_list_more_than_1000(coffer, bucket):
    """The default page is 1,000 keys: the CLI must follow continuation tokens to see them all."""
    s3 = coffer.s3
    count = 1010
    with ThreadPoolExecutor(8) as pool:  # boto3 clients are thread-safe; the server fsyncs each PUT
        list(pool.map(lambda n: s3.put_object(Bucket=bucket, Key=f"many/{n:05d}", Body=b""), range(count)))
    first = s3.list_objects_v2(Bucket=bucket)
    assert first["KeyCount"] == 1000 and first["IsTruncated"] and "NextContinuationToken" in first
    lines = coffer.aws("s3", "ls", "--recursive", f"s3://{bucket}/").stdout.splitlines()
    assert len(lines) == count


def test_list_missing_bucket(coffer):
    with pytest.raises(ClientError) as error:
        coffer.s3.list_objects_v2(Bucket="no-such-bucket-e2e")
    assert error.value.response["Error"]["Code"] == "NoSuchBucket"
