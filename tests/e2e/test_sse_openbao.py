"""SSE-KMS and SSE-S3 against a real OpenBao transit engine: the server runs with `--kms-backend vault`, its token in
COFFER_KMS_VAULT_TOKEN. Keys come from OpenBao (`bao write -f transit/keys/NAME type=aes256-gcm96 derived=true`), the
admin API, or the server's own default key; keys made the standard way (not derived) work too, Coffer binding the
context itself. OpenBao's audit log shows the transit calls. Unknown, disabled and unusable keys are refused, and a sealed OpenBao makes SSE writes answer 503 while plaintext keeps working. A server
started before its OpenBao picks it up by itself once it is there."""

from __future__ import annotations

import json
import re
import time

import pytest
from botocore.exceptions import ClientError

from harness import CofferServer, OpenBao, free_port, make_tls_files, openbao_root_token, sha256_file, unique_name
from sse_helpers import (MiB, Sse, assert_absent, assert_no_temp_files, create_kms_key, expect_error, kms_admin_ok,
                         no_retry_client, random_bytes, refused_write, running_server)

pytestmark = pytest.mark.openbao

BODY = random_bytes(200_001, seed=41)


def vault_server_args(bao: OpenBao, default_key: str) -> dict:
    return vault_args(bao.address, bao.token, default_key)


def vault_args(address: str, token: str, default_key: str) -> dict:
    return {"args": ["--kms-backend", "vault", "--kms-vault-address", address, "--kms-default-key-id", default_key],
            "env": {"COFFER_KMS_VAULT_TOKEN": token}}


@pytest.fixture(scope="module")
def default_key() -> str:
    return unique_name("bao-default")


@pytest.fixture(scope="module")
def server(tmp_path_factory, openbao, default_key) -> CofferServer:
    with running_server(tmp_path_factory, **vault_server_args(openbao, default_key)) as started:
        yield started


@pytest.fixture
def fresh(server) -> str:
    name = unique_name("sse-bao")
    server.s3.create_bucket(Bucket=name)
    return name


def transit_key(bao: OpenBao, name: str | None = None, derived: bool = True) -> str:
    """A transit key made in OpenBao itself, the way docs/kms-vault.md tells operators to."""
    name = name or unique_name("bao-key")
    args = ["write", "-f", f"transit/keys/{name}", "type=aes256-gcm96"] + (["derived=true"] if derived else [])
    bao.bao(*args)
    return name


def read_transit_key(bao: OpenBao, name: str) -> dict:
    return json.loads(bao.bao("read", "-format=json", f"transit/keys/{name}").stdout)["data"]


def audited_paths(bao: OpenBao) -> list[str]:
    paths = []
    for line in bao.audit_log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("type") == "request":
            paths.append(entry["request"]["path"])
    return paths


def test_the_default_key_lives_in_openbao(server, openbao, default_key):
    data = read_transit_key(openbao, default_key)
    assert data["type"] == "aes256-gcm96" and data["derived"] is True, data
    status = kms_admin_ok(server, "GET", "/status")
    assert (status["backend_type"], status["default_key_id"]) == ("vault-transit", default_key), status


@pytest.mark.parametrize("size", [13, 9 * MiB], ids=["13B", "9MiB-multipart"])
def test_aws_cli_round_trip_under_an_openbao_key(server, openbao, fresh, files, tmp_path, size):
    key_id = transit_key(openbao)
    source = files(size)
    server.aws("s3", "cp", str(source), f"s3://{fresh}/obj", "--sse", "aws:kms", "--sse-kms-key-id", key_id)
    head = server.s3.head_object(Bucket=fresh, Key="obj")
    Sse.kms(key_id).check_echo(head)
    assert head["ContentLength"] == size
    target = tmp_path / "obj"
    server.aws("s3", "cp", f"s3://{fresh}/obj", str(target))
    assert sha256_file(target) == sha256_file(source)
    assert f"transit/encrypt/{key_id}" in audited_paths(openbao), "the data key was not wrapped by OpenBao"


def test_sse_s3_and_unnamed_sse_kms_use_the_default_key(server, openbao, fresh, default_key):
    s3 = server.s3
    cases = [("sse-s3", {"ServerSideEncryption": "AES256"}, Sse.s3()),
             ("sse-kms", {"ServerSideEncryption": "aws:kms"}, Sse.kms(default_key))]
    for key, params, expected in cases:
        expected.check_echo(s3.put_object(Bucket=fresh, Key=key, Body=BODY, **params))
        got = s3.get_object(Bucket=fresh, Key=key)
        expected.check_echo(got)
        assert got["Body"].read() == BODY
    assert f"transit/encrypt/{default_key}" in audited_paths(openbao)


def test_key_created_through_the_admin_api(server, openbao, fresh):
    key_id = create_kms_key(server)
    assert read_transit_key(openbao, key_id)["derived"] is True
    sse = Sse.kms(key_id)
    sse.check_echo(server.s3.put_object(Bucket=fresh, Key="obj", Body=BODY, **sse.write_args()))
    assert server.s3.get_object(Bucket=fresh, Key="obj")["Body"].read() == BODY


def test_unknown_key_is_400_and_not_created_in_openbao(server, openbao, fresh):
    missing = unique_name("bao-missing")
    refused_write(server, fresh, "obj", lambda: server.s3.put_object(
        Bucket=fresh, Key="obj", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=missing),
        400, "KMS.NotFoundException")
    assert openbao.bao("read", f"transit/keys/{missing}", check=False).returncode != 0, \
        "a write under an unknown key created it in OpenBao"


def test_disabled_key_is_400(server, openbao, fresh):
    key_id = transit_key(openbao)
    sse = Sse.kms(key_id)
    server.s3.put_object(Bucket=fresh, Key="before", Body=BODY, **sse.write_args())
    kms_admin_ok(server, "POST", f"/keys/{key_id}/disable")
    try:
        refused_write(server, fresh, "obj", lambda: server.s3.put_object(Bucket=fresh, Key="obj", Body=BODY,
                                                                         **sse.write_args()),
                      400, "KMS.DisabledException")
        expect_error(lambda: server.s3.get_object(Bucket=fresh, Key="before"), 400, "KMS.DisabledException")
    finally:
        kms_admin_ok(server, "POST", f"/keys/{key_id}/enable")
    assert server.s3.get_object(Bucket=fresh, Key="before")["Body"].read() == BODY


def test_a_standard_non_derived_transit_key_works_for_sse_kms_and_sse_s3(coffer_factory, openbao):
    """A key made the standard way (`bao write -f transit/keys/NAME`, not derived): Coffer binds the encryption
    context itself, so objects round-trip under it, also as the default key SSE-S3 uses."""
    plain_default = unique_name("plain-default")
    openbao.bao("write", "-f", f"transit/keys/{plain_default}")
    plain = unique_name("plain")
    openbao.bao("write", "-f", f"transit/keys/{plain}")
    assert read_transit_key(openbao, plain)["derived"] is False
    server = coffer_factory(**vault_server_args(openbao, plain_default))
    bucket = unique_name("sse-plain")
    server.s3.create_bucket(Bucket=bucket)
    big = random_bytes(6 * MiB + 7, seed=43)
    server.s3.put_object(Bucket=bucket, Key="kms", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=plain)
    server.s3.put_object(Bucket=bucket, Key="s3", Body=big, ServerSideEncryption="AES256")
    got = server.s3.get_object(Bucket=bucket, Key="kms")
    assert (got["Body"].read(), got["SSEKMSKeyId"]) == (BODY, plain)
    assert server.s3.get_object(Bucket=bucket, Key="s3")["Body"].read() == big
    # After a restart (nothing cached) and a rotation, both still read.
    openbao.bao("write", "-f", f"transit/keys/{plain}/rotate")
    server.stop_and_check()
    restarted = coffer_factory(data_dir=server.data_dir, **vault_server_args(openbao, plain_default))
    assert restarted.s3.get_object(Bucket=bucket, Key="kms")["Body"].read() == BODY
    assert restarted.s3.get_object(Bucket=bucket, Key="s3")["Body"].read() == big


def test_a_key_that_cannot_encrypt_is_a_client_error_and_unknown_keys_are_no_kms_fault(server, openbao, fresh):
    signing = unique_name("signing")
    openbao.bao("write", "-f", f"transit/keys/{signing}", "type=ed25519")
    strict = no_retry_client(server)
    answer = refused_write(server, fresh, "obj", lambda: strict.put_object(
        Bucket=fresh, Key="obj", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=signing),
        400, "KMS.InvalidKeyUsageException")
    assert signing in answer["Error"]["Message"], answer["Error"]

    before = kms_admin_ok(server, "GET", "/status")
    missing = unique_name("missing")
    refused_write(server, fresh, "obj", lambda: strict.put_object(
        Bucket=fresh, Key="obj", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=missing),
        400, "KMS.NotFoundException")
    after = kms_admin_ok(server, "GET", "/status")
    assert after["kms_errors"] == before["kms_errors"], "an unknown key id counted as a KMS fault"
    assert after["last_error"] == before["last_error"]
    # Transit answered 404 for the probe; that is no error of Coffer's to log.
    assert "Detected errors in API response" not in server.log()
    assert not [line for line in server.log().splitlines() if " ERROR " in line and missing in line]


def test_sealed_openbao_is_503_while_plaintext_works(coffer_factory, openbao_factory):
    bao = openbao_factory()
    server = coffer_factory(**vault_server_args(bao, unique_name("sealed-default")))
    bucket = unique_name("sse-sealed")
    server.s3.create_bucket(Bucket=bucket)
    unused = transit_key(bao)  # never used before the seal, so nothing about it is cached
    bao.bao("operator", "seal")
    strict = no_retry_client(server)
    answer = refused_write(server, bucket, "obj", lambda: strict.put_object(
        Bucket=bucket, Key="obj", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=unused), 503, s3=strict)
    assert re.search(r"\bKMS\b", answer["Error"]["Message"]), answer["Error"]
    server.s3.put_object(Bucket=bucket, Key="plain", Body=BODY)
    assert server.s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == BODY


def test_a_server_started_before_openbao_uses_it_once_it_is_up(coffer_factory, openbao_factory):
    """Vault is often started (or unsealed) after the services using it: the KMS start is retried by itself."""
    port, token = free_port(), openbao_root_token()
    server = coffer_factory(**vault_args(f"http://127.0.0.1:{port}", token, unique_name("late-default")))
    status = kms_admin_ok(server, "GET", "/status")
    assert (status["status"], status["healthy"]) == ("Error", False), status
    bucket = unique_name("sse-late")
    server.s3.create_bucket(Bucket=bucket)
    strict = no_retry_client(server)
    kms_write = lambda: strict.put_object(Bucket=bucket, Key="obj", Body=BODY, ServerSideEncryption="aws:kms")
    refused_write(server, bucket, "obj", kms_write, 503, s3=strict)

    openbao_factory(port, token)  # nobody tells the server
    deadline = time.monotonic() + 60  # retries back off to one every 30 s
    while kms_admin_ok(server, "GET", "/status")["status"] != "Running":
        assert time.monotonic() < deadline, kms_admin_ok(server, "GET", "/status")
        time.sleep(0.5)
    assert kms_write()["ServerSideEncryption"] == "aws:kms"
    assert server.s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == BODY


def test_vault_client_identity_timeout_and_retries_come_from_server_flags(coffer_factory, openbao, tmp_path):
    tls = make_tls_files(tmp_path / "tls")  # a PEM certificate and key pair to present (OpenBao here is plain HTTP)
    args = vault_server_args(openbao, unique_name("flags-default"))
    args["args"] += ["--kms-vault-client-cert", str(tls.cert), "--kms-vault-client-key", str(tls.key),
                     "--kms-timeout-seconds", "4", "--kms-retry-attempts", "1"]
    server = coffer_factory(**args)
    assert kms_admin_ok(server, "GET", "/status")["status"] == "Running"
    config = kms_admin_ok(server, "GET", "/config")
    assert (config["timeout_seconds"], config["retry_attempts"]) == (4, 1), config
    shown = json.dumps(config)
    assert str(tls.cert) in shown and str(tls.key) in shown, config
    assert tls.key.read_text() not in shown
