"""Health endpoints: /health/live and /health/ready (and MinIO's /minio/health/…) answer unauthenticated GET and
HEAD with plain urllib. Ready turns 503 when the data directory stops taking writes or the KMS's OpenBao goes away,
and 200 again once it is back; a KMS the operator stopped does not make the node unready. Signed requests to a bucket
named `health` are S3 requests as before."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from harness import CofferServer, unique_name
from sse_helpers import kms_admin_ok

PATHS = ("/health/live", "/health/ready", "/minio/health/live", "/minio/health/ready")


def probe(server: CofferServer, path: str, method: str = "GET") -> tuple[int, dict | None]:
    request = urllib.request.Request(server.endpoint + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body) if body else None


def wait_for_ready(server: CofferServer, status: int, timeout: float = 60) -> dict:
    """Polls /health/ready until it answers `status`; returns its document."""
    deadline = time.monotonic() + timeout
    while True:
        got, document = probe(server, "/health/ready")
        if got == status:
            return document
        assert time.monotonic() < deadline, f"/health/ready stayed {got} {document}, expected {status}"
        time.sleep(0.3)


def vault_flags(address: str, token: str) -> dict:
    return {"args": ["--kms-backend", "vault", "--kms-vault-address", address, "--kms-retry-attempts", "0",
                     "--kms-default-key-id", unique_name("health-default")],
            "env": {"COFFER_KMS_VAULT_TOKEN": token}}


def test_live_and_ready_answer_get_and_head_without_credentials(coffer):
    for path in PATHS:
        status, document = probe(coffer, path)
        assert status == 200, (path, document)
        assert document["status"] == ("live" if path.endswith("live") else "ready"), document
        head_status, head_body = probe(coffer, path, method="HEAD")
        assert (head_status, head_body) == (200, None), path
    _, ready = probe(coffer, "/health/ready")
    assert ready["checks"] == {"storage": "ok", "kms": "ok"}, ready


def test_signed_requests_to_a_bucket_named_health_still_reach_s3(coffer_factory):
    server = coffer_factory()
    server.s3.create_bucket(Bucket="health")
    server.s3.put_object(Bucket="health", Key="live", Body=b"an object, not a probe")
    assert server.s3.get_object(Bucket="health", Key="live")["Body"].read() == b"an object, not a probe"
    assert server.s3.head_object(Bucket="health", Key="live")["ContentLength"] == 22
    presigned = server.s3.generate_presigned_url("get_object", Params={"Bucket": "health", "Key": "live"})
    with urllib.request.urlopen(presigned, timeout=10) as response:
        assert response.read() == b"an object, not a probe"
    assert [o["Key"] for o in server.s3.list_objects_v2(Bucket="health")["Contents"]] == ["live"]
    assert probe(server, "/health/live")[0] == 200  # unsigned, the same path is the probe


def test_ready_is_503_while_the_data_directory_takes_no_writes(coffer_factory):
    server = coffer_factory()
    wait_for_ready(server, 200)
    tmp = server.data_dir / ".coffer" / "tmp"
    # Tests run as root, which permission bits do not stop; a file where the directory should be does.
    shutil.rmtree(tmp)
    tmp.write_text("in the way")
    try:
        document = wait_for_ready(server, 503)
        assert document == {"status": "unready", "checks": {"storage": "failing", "kms": "ok"}}, document
        assert probe(server, "/health/live")[0] == 200
    finally:
        tmp.unlink()
        tmp.mkdir(mode=0o700)
    wait_for_ready(server, 200)
    log = server.log()
    assert "not ready" in log and "the data directory does not take writes" in log, log[-2000:]
    assert "ready again" in log


@pytest.mark.openbao
def test_ready_follows_the_openbao_behind_the_kms(coffer_factory, openbao_factory):
    bao = openbao_factory()
    server = coffer_factory(**vault_flags(bao.address, bao.token))
    assert wait_for_ready(server, 200)["checks"] == {"storage": "ok", "kms": "ok"}

    port = urlsplit(bao.address).port
    bao.stop()
    document = wait_for_ready(server, 503)
    assert document == {"status": "unready", "checks": {"storage": "ok", "kms": "failing"}}, document
    assert bao.address not in json.dumps(document)
    assert probe(server, "/minio/health/ready")[0] == 503
    assert probe(server, "/health/live")[0] == 200

    openbao_factory(port, bao.token)  # the same address and token again
    assert wait_for_ready(server, 200)["checks"]["kms"] == "ok"


def test_a_kms_stopped_by_the_operator_leaves_the_node_ready(coffer_factory):
    server = coffer_factory()
    assert kms_admin_ok(server, "POST", "/stop")["status"] == "Stopped"
    time.sleep(1.2)  # past the reuse window of the last readiness result
    status, document = probe(server, "/health/ready")
    assert (status, document["checks"]) == (200, {"storage": "ok", "kms": "off"}), document
