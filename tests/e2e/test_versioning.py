"""Object versioning with boto3 and the aws CLI at their default settings: bucket versioning states, version ids on
PUT, GET, HEAD, DELETE, copy and multipart uploads in every SSE mode, delete markers, the null version of suspended
buckets, ListObjectVersions with its markers, GetObjectAttributes, the `...Version` policy actions, scrubs of past
versions, and the directory metadata engine, which keeps one version per key."""

from __future__ import annotations

import base64
import json
import secrets
import zlib

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from harness import User, unique_name
from sse_helpers import (MiB, Sse, create_kms_key, expect_error, job_when_ended, kms_admin_ok, multipart_put,
                         random_bytes)
from storage import flip_byte, storage

MODES = ["none", "sse-s3", "sse-kms", "sse-c"]


def sse_of(mode: str) -> Sse:
    return {"none": Sse.none, "sse-s3": Sse.s3, "sse-kms": Sse.kms, "sse-c": Sse.c}[mode]()


def versioned_bucket(s3, status: str = "Enabled") -> str:
    bucket = unique_name("versions")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
    return bucket


def history(s3, bucket: str, **args) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]:
    """(key, version id, is latest) of every version, and of every delete marker, each in listing order over all
    pages. (The answers carry versions and markers as two lists, as s3s models them; clients read them apart.)"""
    versions, markers = [], []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, **args):
        versions += [(v["Key"], v["VersionId"], v["IsLatest"]) for v in page.get("Versions", [])]
        markers += [(m["Key"], m["VersionId"], m["IsLatest"]) for m in page.get("DeleteMarkers", [])]
    return versions, markers


def test_bucket_versioning_states(coffer):
    s3 = coffer.s3
    bucket = unique_name("states")
    s3.create_bucket(Bucket=bucket)
    reply = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in reply
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"unversioned")
    assert "VersionId" not in put
    # `versionId=null` names the object an unversioned bucket holds.
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"unversioned"

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    coffer.aws("s3api", "put-bucket-versioning", "--bucket", bucket, "--versioning-configuration", "Status=Suspended")
    shown = json.loads(coffer.aws("s3api", "get-bucket-versioning", "--bucket", bucket).stdout)
    assert shown["Status"] == "Suspended"
    expect_error(lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Sometimes"}),
                 400, "MalformedXML")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    expect_error(lambda: s3.get_bucket_versioning(Bucket=unique_name("missing")), 404, "NoSuchBucket")


@pytest.mark.parametrize("mode", MODES)
def test_every_version_stays_readable_in_each_sse_mode(coffer, mode):
    s3 = coffer.s3
    sse = sse_of(mode)
    bucket = versioned_bucket(s3)
    bodies = [random_bytes(70_000 + n, seed=n) for n in range(3)]
    ids = []
    for body in bodies:
        reply = s3.put_object(Bucket=bucket, Key="doc", Body=body, **sse.write_args())
        sse.check_echo(reply, context_echoed=True)
        ids.append(reply["VersionId"])
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)

    current = s3.get_object(Bucket=bucket, Key="doc", **sse.read_args())
    assert current["Body"].read() == bodies[-1] and current["VersionId"] == ids[-1]
    for version, body in zip(ids, bodies):
        reply = s3.get_object(Bucket=bucket, Key="doc", VersionId=version, **sse.read_args())
        assert reply["Body"].read() == body and reply["VersionId"] == version
        sse.check_echo(reply)
        ranged = s3.get_object(Bucket=bucket, Key="doc", VersionId=version, Range="bytes=65530-65545",
                               **sse.read_args())
        assert ranged["Body"].read() == body[65530:65546]
        head = s3.head_object(Bucket=bucket, Key="doc", VersionId=version, **sse.read_args())
        assert head["ContentLength"] == len(body) and head["VersionId"] == version
    if mode == "sse-c":
        expect_error(lambda: s3.get_object(Bucket=bucket, Key="doc", VersionId=ids[0]), 400)
        expect_error(lambda: s3.get_object(Bucket=bucket, Key="doc", VersionId=ids[0], **Sse.c().read_args()), 403)
    assert history(s3, bucket) == ([("doc", ids[2], True), ("doc", ids[1], False), ("doc", ids[0], False)], [])
    # Only the current version is listed as the object.
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("doc", len(bodies[-1]))]


def test_versions_have_their_own_object_keys(coffer):
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    for n in range(2):
        s3.put_object(Bucket=bucket, Key="k", Body=b"same body", ServerSideEncryption="AES256")
    ids = [version for _, version, _ in history(s3, bucket)[0]]
    sealed = set()
    for version in ids:
        record = storage(coffer).version_record(bucket, "k", version)
        sealed.add(json.dumps(record["meta"]["encryption"], sort_keys=True))
    assert len(sealed) == 2, "two versions share their encryption metadata"


def test_delete_markers(coffer):
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]

    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (first, second)
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k"), 404, "NoSuchKey")
    expect_error(lambda: s3.head_object(Bucket=bucket, Key="k"), 404)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=first)["Body"].read() == b"one"
    assert history(s3, bucket) == ([("k", second, False), ("k", first, False)], [("k", marker, True)])
    # A delete marker asked for by id: 405 with the marker's headers.
    error = expect_error(lambda: s3.get_object(Bucket=bucket, Key="k", VersionId=marker), 405, "MethodNotAllowed")
    assert error["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true"
    assert error["ResponseMetadata"]["HTTPHeaders"].get("x-amz-version-id") == marker

    # Removing the marker brings the object back.
    removed = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert removed["VersionId"] == marker and removed["DeleteMarker"] is True
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"

    # Removing the current version makes the previous one current.
    removed = s3.delete_object(Bucket=bucket, Key="k", VersionId=second)
    assert removed["VersionId"] == second and "DeleteMarker" not in removed
    current = s3.get_object(Bucket=bucket, Key="k")
    assert current["Body"].read() == b"one" and current["VersionId"] == first
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k", VersionId=second), 404, "NoSuchVersion")
    # Deleting a version that is not there is not an error (S3 answers 204).
    s3.delete_object(Bucket=bucket, Key="k", VersionId=second)
    # A delete marker even on a key that never existed.
    fresh = s3.delete_object(Bucket=bucket, Key="never")
    assert fresh["DeleteMarker"] is True
    assert history(s3, bucket) == ([("k", first, True)], [("never", fresh["VersionId"], True)])


def test_version_ids_are_checked(coffer):
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k", VersionId="not-a-version"), 400, "InvalidArgument")
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k", VersionId="0" * 32), 404, "NoSuchVersion")
    expect_error(lambda: s3.head_object(Bucket=bucket, Key="k", VersionId="0" * 32), 404)
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k", VersionId="null"), 404, "NoSuchVersion")
    expect_error(lambda: s3.delete_object(Bucket=bucket, Key="k", VersionId="../k"), 400, "InvalidArgument")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_suspended_buckets_write_the_null_version(coffer):
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"null one")
    assert put.get("VersionId") in (None, "null")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null two")
    assert history(s3, bucket) == ([("k", "null", True), ("k", kept, False)], [])
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"null two"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=kept)["Body"].read() == b"versioned"

    # A delete while suspended is a null delete marker that replaces the null version.
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    assert history(s3, bucket) == ([("k", kept, False)], [("k", "null", True)])
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k"), 404, "NoSuchKey")

    # Enabled again: new versions stack on top; the null marker stays in the history.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    newest = s3.put_object(Bucket=bucket, Key="k", Body=b"again")["VersionId"]
    assert history(s3, bucket) == ([("k", newest, True), ("k", kept, False)], [("k", "null", False)])


@pytest.mark.parametrize("mode", ["sse-kms", "sse-c"])
def test_multipart_uploads_and_copies_make_versions(coffer, mode):
    s3 = coffer.s3
    sse = sse_of(mode)
    bucket = versioned_bucket(s3)
    body = random_bytes(6 * MiB + 123, seed=7)
    s3.put_object(Bucket=bucket, Key="big", Body=b"small first", **sse.write_args())
    multipart_put(s3, bucket, "big", body, sse)
    versions = history(s3, bucket)[0]
    assert [(k, latest) for k, _, latest in versions] == [("big", True), ("big", False)]
    multipart_id, small_id = versions[0][1], versions[1][1]
    got = s3.get_object(Bucket=bucket, Key="big", VersionId=multipart_id, Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}",
                        **sse.read_args())
    assert got["Body"].read() == body[5 * MiB - 10:5 * MiB + 10]

    # Copy an older version: the copy is a new version of the destination, with the old body.
    copy = s3.copy_object(Bucket=bucket, Key="big", CopySource={"Bucket": bucket, "Key": "big", "VersionId": small_id},
                          **sse.write_args(), **sse.copy_source_args())
    assert copy["CopySourceVersionId"] == small_id
    assert copy["VersionId"] not in (small_id, multipart_id)
    assert s3.get_object(Bucket=bucket, Key="big", **sse.read_args())["Body"].read() == b"small first"
    assert s3.get_object(Bucket=bucket, Key="big", VersionId=multipart_id, **sse.read_args())["Body"].read() == body
    assert len(history(s3, bucket)[0]) == 3

    # A copy of the current version onto itself with new metadata is a new version too; the old one is unchanged.
    s3.copy_object(Bucket=bucket, Key="big", CopySource={"Bucket": bucket, "Key": "big"},
                   MetadataDirective="REPLACE", Metadata={"edited": "yes"}, **sse.write_args(),
                   **sse.copy_source_args())
    assert len(history(s3, bucket)[0]) == 4
    assert "edited" not in s3.head_object(Bucket=bucket, Key="big", VersionId=copy["VersionId"],
                                          **sse.read_args()).get("Metadata", {})


def test_delete_objects_with_versions(coffer):
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    old = s3.put_object(Bucket=bucket, Key="a", Body=b"a1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="a", Body=b"a2")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b1")
    reply = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": old}, {"Key": "b"}]})
    by_key = {entry["Key"]: entry for entry in reply["Deleted"]}
    assert by_key["a"]["VersionId"] == old and "DeleteMarker" not in by_key["a"]
    assert by_key["b"]["DeleteMarker"] is True and len(by_key["b"]["DeleteMarkerVersionId"]) == 32
    versions, markers = history(s3, bucket)
    assert [key for key, _, _ in versions] == ["a", "b"] and [key for key, _, _ in markers] == ["b"]
    bad = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": "bad"}]})
    assert bad["Errors"][0]["Code"] == "InvalidArgument" and bad["Errors"][0]["VersionId"] == "bad"


def test_a_bucket_with_versions_left_is_not_empty(coffer):
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    expect_error(lambda: s3.delete_bucket(Bucket=bucket), 409, "BucketNotEmpty")
    s3.delete_object(Bucket=bucket, Key="k", VersionId=version)
    expect_error(lambda: s3.delete_bucket(Bucket=bucket), 409, "BucketNotEmpty")
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    s3.delete_bucket(Bucket=bucket)


def test_list_object_versions_pages_and_prefixes(coffer):
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    expected = []
    for key in ["a", "dir/x", "dir/y", "z"]:
        ids = [s3.put_object(Bucket=bucket, Key=key, Body=f"{key}{n}".encode())["VersionId"] for n in range(3)]
        expected += [(key, version, version == ids[-1]) for version in reversed(ids)]
    assert history(s3, bucket) == (expected, [])
    # One entry per page: the markers resume between versions of one key.
    assert history(s3, bucket, PaginationConfig={"PageSize": 1}) == (expected, [])
    first = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert first["IsTruncated"] is True and first["NextKeyMarker"] == "a"
    assert first["NextVersionIdMarker"] == expected[1][1]
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker="a", VersionIdMarker=expected[1][1], MaxKeys=1)
    assert [(v["Key"], v["VersionId"]) for v in rest["Versions"]] == [("a", expected[2][1])]
    # After a key marker alone, the listing starts at the next key.
    after = s3.list_object_versions(Bucket=bucket, KeyMarker="a")
    assert [v["Key"] for v in after["Versions"]][:1] == ["dir/x"]

    grouped = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["dir/"]
    assert sorted({v["Key"] for v in grouped["Versions"]}) == ["a", "z"]
    prefixed = s3.list_object_versions(Bucket=bucket, Prefix="dir/")
    assert {v["Key"] for v in prefixed["Versions"]} == {"dir/x", "dir/y"} and len(prefixed["Versions"]) == 6

    cli = json.loads(coffer.aws("s3api", "list-object-versions", "--bucket", bucket, "--prefix", "z").stdout)
    assert [v["VersionId"] for v in cli["Versions"]] == [e[1] for e in expected if e[0] == "z"]
    expect_error(lambda: s3.list_object_versions(Bucket=bucket, VersionIdMarker=expected[0][1]), 400,
                 "InvalidArgument")


def test_get_object_attributes(coffer):
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    body = b"attributes " * 1000
    single = s3.put_object(Bucket=bucket, Key="single", Body=body, ChecksumAlgorithm="CRC32")
    everything = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    reply = s3.get_object_attributes(Bucket=bucket, Key="single", ObjectAttributes=everything)
    assert reply["ETag"].strip('"') == single["ETag"].strip('"')
    assert reply["ObjectSize"] == len(body) and reply["StorageClass"] == "STANDARD"
    expected_crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert reply["Checksum"]["ChecksumCRC32"] == expected_crc
    assert "ObjectParts" not in reply and reply["VersionId"] == single["VersionId"]
    only_size = s3.get_object_attributes(Bucket=bucket, Key="single", ObjectAttributes=["ObjectSize"])
    assert only_size["ObjectSize"] == len(body) and "ETag" not in only_size

    parts_body = random_bytes(11 * MiB, seed=3)
    multipart_put(s3, bucket, "parts", parts_body, Sse.s3())
    reply = s3.get_object_attributes(Bucket=bucket, Key="parts", ObjectAttributes=everything)
    assert reply["ObjectSize"] == len(parts_body) and reply["ETag"].strip('"').endswith("-3")
    parts = reply["ObjectParts"]
    assert parts["TotalPartsCount"] == 3
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == [(1, 5 * MiB), (2, 5 * MiB), (3, MiB)]
    page = s3.get_object_attributes(Bucket=bucket, Key="parts", ObjectAttributes=["ObjectParts"], MaxParts=1,
                                    PartNumberMarker=1)["ObjectParts"]
    assert [p["PartNumber"] for p in page["Parts"]] == [2] and page["IsTruncated"] is True
    assert page["NextPartNumberMarker"] == 2

    # An older version by id, and an SSE-C object only with its key.
    s3.put_object(Bucket=bucket, Key="single", Body=b"newer")
    old = s3.get_object_attributes(Bucket=bucket, Key="single", VersionId=single["VersionId"],
                                   ObjectAttributes=["ObjectSize"])
    assert old["ObjectSize"] == len(body)
    customer = Sse.c()
    s3.put_object(Bucket=bucket, Key="ssec", Body=body, **customer.write_args())
    expect_error(lambda: s3.get_object_attributes(Bucket=bucket, Key="ssec", ObjectAttributes=["ObjectSize"]), 400)
    # botocore does not encode this operation's SSE-C key: it is sent as the headers carry it.
    key = customer.customer
    with_key = s3.get_object_attributes(Bucket=bucket, Key="ssec", ObjectAttributes=["ObjectSize"],
                                        SSECustomerAlgorithm="AES256", SSECustomerKey=key.b64,
                                        SSECustomerKeyMD5=key.md5_b64)
    assert with_key["ObjectSize"] == len(body)
    expect_error(lambda: s3.get_object_attributes(Bucket=bucket, Key="absent", ObjectAttributes=["ETag"]), 404,
                 "NoSuchKey")


def test_version_actions_need_their_own_permissions(coffer_factory):
    reader = User(unique_name("reader"), secrets.token_hex(16))
    server = coffer_factory(users=[reader])
    owner, other = server.s3, server.s3_client(reader.credentials)
    bucket = versioned_bucket(owner)
    version = owner.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]

    def grant(*actions: str) -> None:
        owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": [reader.access_key]}, "Action": list(actions),
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))

    grant("s3:GetObject", "s3:ListBucket", "s3:DeleteObject")
    assert other.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"
    expect_error(lambda: other.get_object(Bucket=bucket, Key="k", VersionId=version), 403, "AccessDenied")
    expect_error(lambda: other.list_object_versions(Bucket=bucket), 403, "AccessDenied")
    expect_error(lambda: other.delete_object(Bucket=bucket, Key="k", VersionId=version), 403, "AccessDenied")
    expect_error(lambda: other.get_bucket_versioning(Bucket=bucket), 403, "AccessDenied")
    expect_error(lambda: other.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}),
                 403, "AccessDenied")
    assert owner.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    grant("s3:GetObjectVersion", "s3:ListBucketVersions", "s3:DeleteObjectVersion")
    assert other.get_object(Bucket=bucket, Key="k", VersionId=version)["Body"].read() == b"v1"
    assert [v["VersionId"] for v in other.list_object_versions(Bucket=bucket)["Versions"]] == [version]
    other.delete_object(Bucket=bucket, Key="k", VersionId=version)
    assert history(owner, bucket) == ([], [])


def test_the_directory_engine_keeps_one_version(coffer_factory):
    server = coffer_factory(args=["--metadata", "directory"])
    s3 = server.s3
    bucket = unique_name("flat")
    s3.create_bucket(Bucket=bucket)
    expect_error(lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
                 501, "NotImplemented")
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"only")
    listed = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listed] == [("k", "null", True)]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"only"
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k", VersionId="0" * 32), 404, "NoSuchVersion")
    deleted = s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert "DeleteMarker" not in deleted
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k"), 404, "NoSuchKey")


def test_a_rewrap_moves_every_version_off_the_old_key(coffer):
    """Past versions and versions behind a delete marker need their key as much as the current one: a rewrap
    moves them all, the impact report counts them all, and the old key can then be disabled."""
    s3 = coffer.s3
    old_key, new_key = create_kms_key(coffer, unique_name("ver-old")), create_kms_key(coffer, unique_name("ver-new"))
    bucket = versioned_bucket(s3)
    bodies = {}
    for key in ("live", "deleted"):
        for n in range(2):
            body = random_bytes(3000 + n, seed=n)
            bodies[s3.put_object(Bucket=bucket, Key=key, Body=body, **Sse.kms(old_key).write_args())["VersionId"]] = \
                (key, body)
    s3.delete_object(Bucket=bucket, Key="deleted")
    assert kms_admin_ok(coffer, "GET", f"/keys/{old_key}/impact")["objects"] == 4

    job = kms_admin_ok(coffer, "POST", "/jobs/rewrap", {"buckets": [bucket], "from": {"key": old_key},
                                                        "to": {"key": new_key}})
    done = job_when_ended(coffer, job["id"], 120, poll=0.5)
    assert done["state"] == "completed" and done["failures"] == [], done
    assert (done["progress"]["total"], done["progress"]["changed"]) == (4, 4), done
    assert kms_admin_ok(coffer, "GET", f"/keys/{old_key}/impact")["objects"] == 0
    assert kms_admin_ok(coffer, "GET", f"/keys/{new_key}/impact")["objects"] == 4

    # Without --yes the CLI refuses a key that objects still need: nothing does now.
    coffer.admin_cli("kms", "key", "disable", old_key, json_output=False, input="")
    for version, (key, body) in bodies.items():
        reply = s3.get_object(Bucket=bucket, Key=key, VersionId=version)
        assert reply["Body"].read() == body and reply["SSEKMSKeyId"] == new_key


def test_a_scrub_checks_past_versions_and_keys_behind_delete_markers(coffer):
    """A scrub reads every stored version, not only the current ones: a flipped bit in a past version is reported
    under its key, the reason naming the version, and a GET of that version refuses it."""
    s3 = coffer.s3
    bucket = versioned_bucket(s3)
    sse = Sse.kms()
    bodies = [random_bytes(300_000 + n, seed=n) for n in range(3)]
    old = s3.put_object(Bucket=bucket, Key="doc", Body=bodies[0], **sse.write_args())["VersionId"]
    s3.put_object(Bucket=bucket, Key="doc", Body=bodies[1], **sse.write_args())
    s3.put_object(Bucket=bucket, Key="gone", Body=bodies[2], **sse.write_args())
    s3.delete_object(Bucket=bucket, Key="gone")

    def scrub() -> tuple[int, dict]:
        result = coffer.admin_cli("scrub", "--wait", "--bucket", bucket, check=False)
        return result.returncode, json.loads(result.stdout)

    status, clean = scrub()
    progress = clean["progress"]
    assert (status, progress["examined"], progress["verified"], progress["damaged"]) == (0, 2, 2, 0), clean
    assert progress["bytes"] >= sum(map(len, bodies)), progress

    stored = storage(coffer)
    damaged_file = stored.data_file_at(stored.version_record(bucket, "doc", old)["data_files"][0])
    original = flip_byte(damaged_file, 100_000)
    try:
        status, found = scrub()
        assert (status, found["progress"]["verified"], found["progress"]["damaged"]) == (1, 1, 1), found
        [damage] = found["damaged"]
        assert (damage["bucket"], damage["key"]) == (bucket, "doc"), damage
        assert damage["reason"].startswith(f"version {old}: ") and "checksum" in damage["reason"], damage
        no_retry = coffer.s3_client(retries={"max_attempts": 1, "mode": "standard"},
                                    response_checksum_validation="when_required")
        with pytest.raises((ClientError, BotoCoreError)):
            no_retry.get_object(Bucket=bucket, Key="doc", VersionId=old)["Body"].read()
        assert no_retry.get_object(Bucket=bucket, Key="doc")["Body"].read() == bodies[1]
    finally:
        damaged_file.write_bytes(original)
    assert s3.get_object(Bucket=bucket, Key="doc", VersionId=old)["Body"].read() == bodies[0]
