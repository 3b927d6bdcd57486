"""Several KMS stores at once (docs/kms.md, "Stores"): the embedded local store plus two OpenBao servers, buckets
pinned to each through their own key, SSE-S3 and SSE-KMS round trips per store, and one store down failing only the
requests that need it — with a 503 naming the store — while the others keep serving, then recovering by itself."""

from __future__ import annotations

import os
import signal

import pytest

from harness import OpenBao, unique_name
from sse_helpers import expect_error, kms_admin, kms_admin_ok, no_retry_client, random_bytes, vault_store

pytestmark = pytest.mark.openbao

BODY = random_bytes(150_003, seed=61)


def transit_key(bao: OpenBao) -> str:
    name = unique_name("store-key")
    bao.bao("write", "-f", f"transit/keys/{name}")
    return name


def signal_group(bao: OpenBao, signum: int) -> None:
    os.killpg(os.getpgid(bao.process.pid), signum)


def test_two_openbao_stores_and_the_local_store_serve_side_by_side(coffer_factory, openbao_factory):
    bao_a, bao_b = openbao_factory(), openbao_factory()
    key_a, key_b = transit_key(bao_a), transit_key(bao_b)
    server = coffer_factory(args=["--kms-timeout-seconds", "3", "--kms-retry-attempts", "0"])
    for name, bao in (("bao-a", bao_a), ("bao-b", bao_b)):
        added = kms_admin_ok(server, "POST", f"/stores/{name}", vault_store(bao))
        assert (added["name"], added["healthy"], added["default"]) == (name, True, False), added
        assert bao.token not in str(added) and added["config"]["auth"]["token"] == "***", added

    buckets = {"local": unique_name("st-local"), "bao-a": unique_name("st-a"), "bao-b": unique_name("st-b")}
    for bucket in buckets.values():
        server.s3.create_bucket(Bucket=bucket)
    for store, key in (("bao-a", key_a), ("bao-b", key_b)):
        pinned = kms_admin_ok(server, "PUT", f"/buckets/{buckets[store]}/key", {"key_id": f"{store}/{key}"})
        assert pinned == {"bucket": buckets[store], "key_id": f"{store}/{key}", "own": True}, pinned

    # Every bucket: SSE-S3 and SSE-KMS naming no key use the bucket's key in its store.
    for store, bucket in buckets.items():
        server.s3.put_object(Bucket=bucket, Key="s3", Body=BODY, ServerSideEncryption="AES256")
        server.s3.put_object(Bucket=bucket, Key="kms", Body=BODY, ServerSideEncryption="aws:kms")
        got = server.s3.get_object(Bucket=bucket, Key="kms")
        assert got["Body"].read() == BODY and got["ServerSideEncryption"] == "aws:kms"
        assert server.s3.get_object(Bucket=bucket, Key="s3")["Body"].read() == BODY
    assert server.s3.head_object(Bucket=buckets["bao-a"], Key="kms")["SSEKMSKeyId"] == f"bao-a/{key_a}"
    # A request may name a key of any store.
    server.s3.put_object(Bucket=buckets["local"], Key="in-b", Body=BODY, ServerSideEncryption="aws:kms",
                         SSEKMSKeyId=f"bao-b/{key_b}")
    assert server.s3.get_object(Bucket=buckets["local"], Key="in-b")["Body"].read() == BODY
    # The keys live where the buckets point: each OpenBao saw encryptions under its own key only.
    assert f"transit/encrypt/{key_a}" in bao_a.audit_log.read_text()
    assert key_b not in bao_a.audit_log.read_text() and key_a not in bao_b.audit_log.read_text()

    strict = no_retry_client(server)
    signal_group(bao_a, signal.SIGSTOP)  # OpenBao A stops answering
    try:
        kms_admin_ok(server, "POST", "/clear-cache")  # so reads need the stores again
        answer = expect_error(lambda: strict.get_object(Bucket=buckets["bao-a"], Key="kms"), 503, "ServiceUnavailable")
        assert "bao-a" in answer["Error"]["Message"], answer["Error"]
        expect_error(lambda: strict.put_object(Bucket=buckets["bao-a"], Key="new", Body=BODY,
                                               ServerSideEncryption="AES256"), 503, "ServiceUnavailable")
        for store in ("local", "bao-b"):
            assert strict.get_object(Bucket=buckets[store], Key="kms")["Body"].read() == BODY
            strict.put_object(Bucket=buckets[store], Key="while-a-is-down", Body=BODY, ServerSideEncryption="AES256")
        stores = {store["name"]: store for store in kms_admin_ok(server, "GET", "/stores")["stores"]}
        assert (stores["bao-a"]["healthy"], stores["bao-b"]["healthy"], stores["local"]["healthy"]) == (
            False, True, True), stores
    finally:
        signal_group(bao_a, signal.SIGCONT)
    # Back without restarting Coffer.
    assert strict.get_object(Bucket=buckets["bao-a"], Key="kms")["Body"].read() == BODY
    strict.put_object(Bucket=buckets["bao-a"], Key="after", Body=BODY, ServerSideEncryption="AES256")

    # A store that is gone for good (its server killed): only its requests fail, naming it.
    bao_b.stop()
    kms_admin_ok(server, "POST", "/stores/bao-b/clear-cache")
    answer = expect_error(lambda: strict.get_object(Bucket=buckets["bao-b"], Key="s3"), 503, "ServiceUnavailable")
    assert "bao-b" in answer["Error"]["Message"], answer["Error"]
    assert strict.get_object(Bucket=buckets["local"], Key="kms")["Body"].read() == BODY
    assert strict.get_object(Bucket=buckets["bao-a"], Key="s3")["Body"].read() == BODY

    # A store objects or buckets depend on is not removed (the objects are counted); the default store neither.
    status, refused = kms_admin(server, "DELETE", "/stores/bao-a")
    assert (status, refused["code"]) == (409, "StoreInUse"), refused
    assert f"3 objects (450009 bytes) in {buckets['bao-a']} still need KMS store bao-a" in refused["message"], refused
    status, refused = kms_admin(server, "DELETE", "/stores/local")
    assert (status, refused["code"]) == (409, "StoreInUse"), refused


def test_a_new_default_store_takes_new_writes_and_old_objects_stay_readable(coffer_factory, openbao):
    server = coffer_factory()
    bucket = unique_name("st-default")
    server.s3.create_bucket(Bucket=bucket)
    server.s3.put_object(Bucket=bucket, Key="before", Body=BODY, ServerSideEncryption="AES256")
    kms_admin_ok(server, "POST", "/stores/vault", vault_store(openbao))
    status = kms_admin_ok(server, "POST", "/stores/vault/default")
    assert (status["default_store"], status["backend_type"]) == ("vault", "vault-transit"), status
    default_key = status["default_key_id"]
    server.s3.put_object(Bucket=bucket, Key="after", Body=BODY, ServerSideEncryption="AES256")
    assert f"transit/encrypt/{default_key}" in openbao.audit_log.read_text()
    server.stop_and_check()

    # After a restart, each object is opened by the store that wrapped its key.
    restarted = coffer_factory(data_dir=server.data_dir)
    for key in ("before", "after"):
        assert restarted.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == BODY
