"""Retiring a key's older versions (docs/kms.md, "Retiring a key version") in the local store and in an OpenBao
store: once the key's minimum decryption version is raised past the version an object's data key was wrapped with,
reading the object answers 400 KMS.KMSInvalidStateException naming the retired version, objects under newer versions
read on, and lowering the minimum again makes the old object readable again. Raised with the `coffer admin` CLI,
lowered with a signed admin call. While objects still need a version, retiring it is refused unless forced."""

from __future__ import annotations

import json

import pytest

from harness import CofferServer, unique_name
from sse_helpers import expect_error, kms_admin, kms_admin_ok, no_retry_client, random_bytes, running_server
from test_sse_openbao import vault_server_args

BODY = random_bytes(70_001, seed=83)


@pytest.fixture(scope="module")
def openbao_server(tmp_path_factory, openbao) -> CofferServer:
    with running_server(tmp_path_factory, **vault_server_args(openbao, unique_name("mv-default"))) as started:
        yield started


@pytest.fixture(params=["local", pytest.param("openbao", marks=pytest.mark.openbao)])
def server(request) -> CofferServer:
    return request.getfixturevalue("coffer" if request.param == "local" else "openbao_server")


def put(server: CofferServer, bucket: str, name: str, key_id: str) -> None:
    server.s3.put_object(Bucket=bucket, Key=name, Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)


def read(server: CofferServer, bucket: str, name: str) -> bytes:
    return server.s3.get_object(Bucket=bucket, Key=name)["Body"].read()


def test_a_raised_minimum_decryption_version_retires_old_objects_until_lowered(server):
    bucket, key_id = unique_name("minver"), unique_name("retiring")
    server.s3.create_bucket(Bucket=bucket)
    assert kms_admin_ok(server, "POST", "/keys", {"key_id": key_id})["min_decryption_version"] == 1
    put(server, bucket, "v1", key_id)
    kms_admin_ok(server, "POST", f"/keys/{key_id}/rotate")
    put(server, bucket, "v2", key_id)
    assert read(server, bucket, "v1") == BODY  # now in the read cache: the raise must still apply at once

    status, refused = kms_admin(server, "PUT", f"/keys/{key_id}/min-decryption-version", {"min_decryption_version": 3})
    assert (status, refused["code"], refused["field"]) == (400, "InvalidArgument", "min_decryption_version"), refused
    status, in_use = kms_admin(server, "PUT", f"/keys/{key_id}/min-decryption-version", {"min_decryption_version": 2})
    assert (status, in_use["code"]) == (409, "KeyVersionInUse"), in_use
    assert "1 objects" in in_use["message"] and "--from-versions-below 2" in in_use["message"], in_use
    assert kms_admin_ok(server, "GET", f"/keys/{key_id}")["min_decryption_version"] == 1
    raised = json.loads(server.admin_cli("kms", "key", "set-min-version", key_id, "2", "--force").stdout)
    assert (raised["min_decryption_version"], raised["current_version"]) == (2, 2), raised
    assert [version["version"] for version in raised["versions"]] == [2], raised
    assert kms_admin_ok(server, "GET", f"/keys/{key_id}")["min_decryption_version"] == 2

    answer = expect_error(lambda: no_retry_client(server).get_object(Bucket=bucket, Key="v1"), 400,
                          "KMS.KMSInvalidStateException")
    assert f"version 1 of KMS key {key_id} is retired" in answer["Error"]["Message"], answer["Error"]
    assert read(server, bucket, "v2") == BODY
    put(server, bucket, "after", key_id)
    assert read(server, bucket, "after") == BODY

    lowered = kms_admin_ok(server, "PUT", f"/keys/{key_id}/min-decryption-version", {"min_decryption_version": 1})
    assert lowered["min_decryption_version"] == 1, lowered
    assert read(server, bucket, "v1") == BODY
