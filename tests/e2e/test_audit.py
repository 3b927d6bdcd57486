"""The audit file (--audit-file, docs/kms.md "Audit"): after a scripted session with boto3 and the admin API it holds
exactly one JSON line per KMS key use on the object path (kms:GenerateDataKey per write sealed under a bucket key,
kms:Decrypt per read or upload part opening one; none for SSE-C or plaintext) and per admin action, with the request
id the client saw, the access key, bucket, object, store, key and key version — and no secret anywhere."""

from __future__ import annotations

import base64
import json
import secrets
from collections import Counter

import botocore.exceptions
import pytest

from harness import User, unique_name
from sse_helpers import job_when_ended, kms_admin, kms_admin_ok

BODY = b"audited bytes " * 1000


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_key_use_and_admin_action_is_one_line(coffer_factory, tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    bucket, key_id, refused_key = unique_name("audit"), unique_name("audit-key"), unique_name("refused-key")
    may_use = {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
               "Resource": [f"arn:aws:kms:::key/{key_id}", "arn:aws:kms:::key/no-such-key"]}
    user = User("audit-user", "audit-user-secret-" + secrets.token_hex(8),
                policy={"Version": "2012-10-17", "Statement": [may_use]})
    server = coffer_factory(args=["--audit-file", str(audit_file), "--min-part-size", "1"], users=[user])
    s3 = server.s3_client(user.credentials)
    customer_key = secrets.token_bytes(32)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": customer_key}

    kms_admin_ok(server, "POST", "/keys", {"key_id": key_id})                        # admin: create
    kms_admin_ok(server, "POST", "/keys", {"key_id": refused_key})                   # admin: create
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="s3", Body=BODY, ServerSideEncryption="AES256")          # generate 1
    put = s3.put_object(Bucket=bucket, Key="kms", Body=BODY, ServerSideEncryption="aws:kms",
                        SSEKMSKeyId=key_id)                                          # generate 2
    s3.put_object(Bucket=bucket, Key="c", Body=BODY, **sse_c)                        # no KMS
    s3.put_object(Bucket=bucket, Key="plain", Body=BODY)                             # no KMS
    get = s3.get_object(Bucket=bucket, Key="kms")                                    # decrypt 1
    assert get["Body"].read() == BODY
    assert s3.get_object(Bucket=bucket, Key="s3")["Body"].read() == BODY             # decrypt 2
    assert s3.get_object(Bucket=bucket, Key="c", **sse_c)["Body"].read() == BODY    # no KMS
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="aws:kms",
                                        SSEKMSKeyId=key_id)                          # generate 3
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                                       PartNumber=n, Body=BODY)["ETag"]}
             for n in (1, 2)]                                                        # decrypt 3, 4
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})                   # decrypt 5 (part-list commitment)
    s3.copy_object(Bucket=bucket, Key="s3", CopySource={"Bucket": bucket, "Key": "s3"},
                   ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)               # decrypt 6, generate 4
    with pytest.raises(botocore.exceptions.ClientError):
        s3.put_object(Bucket=bucket, Key="nokey", Body=BODY, ServerSideEncryption="aws:kms",
                      SSEKMSKeyId="no-such-key")                                     # generate 5, failed
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        s3.put_object(Bucket=bucket, Key="denied", Body=BODY, ServerSideEncryption="aws:kms",
                      SSEKMSKeyId=refused_key)                                       # generate 6, refused
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    kms_admin_ok(server, "POST", f"/keys/{key_id}/rotate")                           # admin: rotate
    status, _ = kms_admin(server, "POST", "/keys/no-such-key/rotate")                # admin: rotate, failed
    assert status == 404
    server.stop()

    audit = lines(audit_file)
    key_uses = [line for line in audit if line.get("action", "").startswith("kms:")]
    admin = [line for line in audit if line.get("action", "").startswith("kms.")]
    assert len(key_uses) + len(admin) == len(audit), audit
    assert Counter((line["action"], line["outcome"]) for line in key_uses) == {
        ("kms:GenerateDataKey", "success"): 4,
        ("kms:GenerateDataKey", "failed"): 2,
        ("kms:Decrypt", "success"): 6,
    }, key_uses
    assert Counter((line["action"], line["outcome"]) for line in admin) == {
        ("kms.key.create", "success"): 2,
        ("kms.key.rotate", "success"): 1,
        ("kms.key.rotate", "failed"): 1,
    }, admin
    assert {line["key"] for line in key_uses} == {"s3", "kms", "mp", "nokey", "denied"}
    for line in key_uses:
        assert line["access_key"] == user.access_key and line["bucket"] == bucket, line
        assert line["time"].endswith("Z") and line["request_id"] != "-", line
        if line["outcome"] == "success":
            assert line["store"] == "local" and line["key_version"] == 1, line
    # The line of a read carries the id the client saw, and the key the object is under.
    read = next(line for line in key_uses if line["key"] == "kms" and line["action"] == "kms:Decrypt")
    assert read["request_id"] == get["ResponseMetadata"]["RequestId"], read
    assert read["key_id"] == key_id, read
    write = next(line for line in key_uses if line["key"] == "kms" and line["action"] == "kms:GenerateDataKey")
    assert write["request_id"] == put["ResponseMetadata"]["RequestId"], write
    failed = {line["key"]: line for line in key_uses if line["outcome"] == "failed"}
    assert (failed["nokey"]["key_id"], failed["nokey"]["error"]) == ("no-such-key", "KMS.NotFoundException"), failed
    assert (failed["denied"]["key_id"], failed["denied"]["error"]) == (refused_key, "AccessDenied"), failed
    assert failed["denied"]["request_id"] == denied.value.response["ResponseMetadata"]["RequestId"]
    assert {line["subject"] for line in admin} == {key_id, refused_key, "no-such-key"}, admin
    assert all(line["request_id"] != "-" and line["access_key"] == server.root.access_key for line in admin), admin

    text = audit_file.read_text()
    for secret in (user.secret_key, server.root.secret_key, base64.b64encode(customer_key).decode(),
                   customer_key.hex()):
        assert secret not in text
    assert audit_file.stat().st_mode & 0o777 == 0o600


def test_the_audit_file_rotates_by_size(coffer_factory, tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    server = coffer_factory(args=["--audit-file", str(audit_file), "--audit-max-bytes", "4096"])
    bucket = unique_name("audit-rot")
    server.s3.create_bucket(Bucket=bucket)
    for n in range(40):
        server.s3.put_object(Bucket=bucket, Key=f"k{n}", Body=b"x", ServerSideEncryption="AES256")
    server.stop()
    rotated = audit_file.with_name(audit_file.name + ".1")
    assert rotated.exists(), "the file grew past 4096 bytes"
    assert rotated.stat().st_size > 4096 - 1000 and rotated.stat().st_size < 4096 + 1000
    newest = lines(audit_file)
    assert newest and newest[-1]["key"] == "k39", newest[-1:]
    assert all(line["action"] == "kms:GenerateDataKey" for line in lines(rotated) + newest)


def test_a_rewrap_job_audits_each_object_it_moves(coffer_factory, tmp_path):
    audit_file = tmp_path / "audit.jsonl"
    server = coffer_factory(args=["--audit-file", str(audit_file)])
    bucket, old_key, new_key = unique_name("audit-job"), unique_name("old"), unique_name("new")
    for key_id in (old_key, new_key):
        kms_admin_ok(server, "POST", "/keys", {"key_id": key_id})
    server.s3.create_bucket(Bucket=bucket)
    for n in range(3):
        server.s3.put_object(Bucket=bucket, Key=f"k{n}", Body=BODY, ServerSideEncryption="aws:kms",
                             SSEKMSKeyId=old_key)
    server.s3.put_object(Bucket=bucket, Key="elsewhere", Body=BODY, ServerSideEncryption="AES256")
    job = kms_admin_ok(server, "POST", "/jobs/rewrap", {"buckets": [bucket], "from": {"key": old_key},
                                                        "to": {"key": new_key}})
    state = job_when_ended(server, job["id"], timeout=120)
    assert state["state"] == "completed" and state["progress"]["changed"] == 3, state
    server.stop()

    by_job = [line for line in lines(audit_file) if line["access_key"] == f"job:{job['id']}"]
    assert Counter((line["action"], line["key_id"], line["key"]) for line in by_job) == {
        **{("kms:Decrypt", old_key, f"k{n}"): 1 for n in range(3)},
        **{("kms:GenerateDataKey", new_key, f"k{n}"): 1 for n in range(3)},
    }, by_job
    assert all(line["request_id"] == job["id"] and line["outcome"] == "success" for line in by_job), by_job
