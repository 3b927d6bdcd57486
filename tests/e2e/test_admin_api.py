"""The KMS admin API (issue 4) against the real release binary: awscurl from PyPI, the `coffer admin` CLI, real
OpenBao for the vault-transit backend, and openapi-spec-validator for admin-api/openapi.yaml.

Every request is a real signed HTTP request; answers are checked for their status and JSON body, and the server log
for audit lines and for secrets that must never appear.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import (REPO, Credentials, CofferServer, OpenBao, User, awscurl_status, clean_environment,
                     coffer_binary, run, tool, unique_name)

ADMIN = "/coffer/admin/v3/kms"
ALIASES = ("/coffer/admin/v3/kms", "/rustfs/admin/v3/kms", "/minio/admin/v3/kms")
SPEC = REPO / "admin-api" / "openapi.yaml"


@dataclass
class Reply:
    status: int
    text: str

    @property
    def json(self):
        return json.loads(self.text)


def admin(server: CofferServer, method: str, path: str, body=None, creds: Credentials | None = None,
          prefix: str = ADMIN) -> Reply:
    """One admin request signed by awscurl (service s3); `body` is sent as given (str) or as JSON."""
    args = ["-X", method]
    if body is not None:
        args += ["-d", body if isinstance(body, str) else json.dumps(body), "-H", "Content-Type: application/json"]
    result = server.awscurl(prefix + path, *args, check=False, creds=creds)
    return Reply(awscurl_status(result), result.stdout)


def ok(reply: Reply):
    assert reply.status == 200, f"HTTP {reply.status}: {reply.text}"
    return reply.json


def error(reply: Reply, status: int, code: str) -> dict:
    assert reply.status == status, f"expected HTTP {status} {code}, got {reply.status}: {reply.text}"
    body = reply.json
    assert body["code"] == code, body
    assert body["message"], body
    return body


def local_body(server: CofferServer, **extra) -> dict:
    key_dir = server.sandbox / f"kms-{secrets.token_hex(4)}"
    return {"backend_type": "local", "key_dir": str(key_dir), "master_key": "mk-" + secrets.token_hex(16), **extra}


def vault_body(bao: OpenBao, **extra) -> dict:
    return {"backend_type": "vault-transit", "address": bao.address, "auth_method": {"Token": {"token": bao.token}},
            "mount_path": "transit", "default_key_id": unique_name("dk"), **extra}


def reset(server: CofferServer, body: dict) -> dict:
    """The operator's reset sequence: stop → configure → start → status."""
    ok(admin(server, "POST", "/stop"))
    assert ok(admin(server, "GET", "/status"))["status"] == "Stopped"
    ok(admin(server, "POST", "/configure", body))
    ok(admin(server, "POST", "/start"))
    status = ok(admin(server, "GET", "/status"))
    assert status["status"] == "Running", status
    assert status["healthy"] is True, status
    return status


def audit_lines(server: CofferServer) -> list[str]:
    return [line for line in server.log().splitlines() if "coffer::audit" in line]


# ---- the issue's awscurl commands, verbatim ----------------------------------------------------------------------

def test_issue_awscurl_commands_work_verbatim(coffer_factory):
    # No COFFER_ROOT_* → the documented loopback default admin/admin, exactly as in the issue's commands.
    server = coffer_factory(root=None)
    awscurl = tool("awscurl")
    base = f"http://localhost:{server.port}"
    signing = ["--service", "s3", "--region", "us-east-1", "--access_key", "admin", "--secret_key", "admin"]

    status = run([awscurl, *signing, f"{base}/rustfs/admin/v3/kms/status"], clean_environment())
    body = json.loads(status.stdout)
    assert body["status"] == "Running" and body["healthy"] is True, body
    assert set(body) >= {"status", "healthy", "backend_type", "default_key_id", "cache", "kms_calls", "last_error"}
    assert set(body["cache"]) >= {"enabled", "hit_count", "miss_count", "entry_count", "eviction_count"}

    cleared = run([awscurl, *signing, "-X", "POST", f"{base}/rustfs/admin/v3/kms/clear-cache"], clean_environment())
    assert json.loads(cleared.stdout)["cache"]["entry_count"] == 0


def test_status_is_the_same_under_every_alias(coffer):
    answers = [ok(admin(coffer, "GET", "/status", prefix=prefix)) for prefix in ALIASES]
    assert all(answer["status"] == answers[0]["status"] for answer in answers), answers
    assert all(answer["backend_type"] == answers[0]["backend_type"] for answer in answers), answers


# ---- lifecycle: local backend ------------------------------------------------------------------------------------

def test_local_backend_reset_sequence(coffer_factory):
    server = coffer_factory()
    body = local_body(server, default_key_id="app-default", cache_ttl_seconds=60)
    status = reset(server, body)
    assert status["backend_type"] == "local"
    assert status["default_key_id"] == "app-default"
    assert Path(body["key_dir"]).is_dir()

    config = ok(admin(server, "GET", "/config"))
    assert body["master_key"] not in json.dumps(config)
    assert "***" in json.dumps(config)
    assert body["key_dir"] in json.dumps(config)

    # the configured backend serves keys
    key = ok(admin(server, "POST", "/keys", {"key_id": "reset-key"}))
    assert key["key_id"] == "reset-key" and key["state"] == "Enabled"

    lines = audit_lines(server)
    for action in ("kms.stop", "kms.configure", "kms.start", "kms.key.create"):
        assert any(action in line and server.root.access_key in line and "success" in line for line in lines), \
            f"no audit line for {action}:\n" + "\n".join(lines)
    assert body["master_key"] not in server.log()


def test_configure_while_running_is_a_conflict_and_changes_nothing(coffer_factory):
    server = coffer_factory()
    before = ok(admin(server, "GET", "/config"))
    body = error(admin(server, "POST", "/configure", local_body(server)), 409, "InvalidKMSState")
    assert "stop" in body["message"] and "reconfigure" in body["message"], body
    assert ok(admin(server, "GET", "/config")) == before
    assert ok(admin(server, "GET", "/status"))["status"] == "Running"


def test_reconfigure_swaps_a_running_kms(coffer_factory):
    server = coffer_factory()
    body = local_body(server, default_key_id="swapped")
    status = ok(admin(server, "POST", "/reconfigure", body))
    assert status["status"] == "Running" and status["default_key_id"] == "swapped", status
    assert body["key_dir"] in json.dumps(ok(admin(server, "GET", "/config")))


def test_stopped_kms_refuses_key_operations(coffer_factory):
    server = coffer_factory()
    ok(admin(server, "POST", "/stop"))
    error(admin(server, "GET", "/keys"), 409, "KMSNotRunning")
    error(admin(server, "POST", "/keys", {"key_id": "k1"}), 409, "KMSNotRunning")
    assert ok(admin(server, "GET", "/status"))["status"] == "Stopped"
    ok(admin(server, "POST", "/start"))
    assert ok(admin(server, "GET", "/status"))["status"] == "Running"


# ---- lifecycle: real OpenBao -------------------------------------------------------------------------------------

@pytest.mark.openbao
def test_openbao_token_backend_reset_sequence(coffer_factory, openbao):
    server = coffer_factory()
    body = vault_body(openbao)
    status = reset(server, body)
    assert status["backend_type"] == "vault-transit"

    config = json.dumps(ok(admin(server, "GET", "/config")))
    assert openbao.token not in config and "***" in config, config

    key_id = unique_name("vk")
    ok(admin(server, "POST", "/keys", {"key_id": key_id, "description": "e2e"}))
    openbao.bao("read", f"transit/keys/{key_id}")  # the key lives in OpenBao's transit engine
    rotated = ok(admin(server, "POST", f"/keys/{key_id}/rotate"))
    assert rotated["current_version"] == 2, rotated
    assert ok(admin(server, "GET", f"/key/status?key-id={key_id}", prefix="/minio/admin/v3/kms"))["key-id"] == key_id
    assert openbao.token not in server.log()


@pytest.mark.openbao
def test_openbao_approle_backend(coffer_factory, openbao):
    role = unique_name("role")
    policy = f'path "transit/*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}\n'
    openbao.bao("policy", "write", role, "-", input=policy)
    if "approle/" not in openbao.bao("auth", "list").stdout:
        openbao.bao("auth", "enable", "approle", check=False)
    openbao.bao("write", f"auth/approle/role/{role}", f"token_policies={role}")
    role_id = openbao.bao("read", "-field=role_id", f"auth/approle/role/{role}/role-id").stdout.strip()
    secret_id = openbao.bao("write", "-f", "-field=secret_id", f"auth/approle/role/{role}/secret-id").stdout.strip()

    server = coffer_factory()
    body = vault_body(openbao, auth_method={"AppRole": {"role_id": role_id, "secret_id": secret_id}})
    status = reset(server, body)
    assert status["backend_type"] == "vault-transit"
    config = json.dumps(ok(admin(server, "GET", "/config")))
    assert secret_id not in config and role_id in config, config
    ok(admin(server, "POST", "/keys", {"key_id": unique_name("ar")}))
    assert secret_id not in server.log()


@pytest.mark.openbao
def test_sealed_openbao_is_unhealthy_and_never_a_200(coffer_factory, openbao_factory):
    bao = openbao_factory()
    server = coffer_factory()
    reset(server, vault_body(bao))
    key_id = unique_name("sk")
    ok(admin(server, "POST", "/keys", {"key_id": key_id}))

    bao.bao("operator", "seal")
    status = ok(admin(server, "GET", "/status"))  # status is always 200 …
    assert status["healthy"] is False and status["reason"], status  # … and says why
    reply = admin(server, "POST", "/keys", {"key_id": unique_name("sk")})
    assert reply.status == 503, reply
    assert reply.json["code"] == "KMSUnavailable", reply.text
    reply = admin(server, "GET", f"/key/status?key-id={key_id}", prefix="/minio/admin/v3/kms")
    assert reply.status >= 500, reply


# ---- who may call ------------------------------------------------------------------------------------------------

def test_only_admin_users_are_let_in(coffer_factory):
    reader = User("e2e-reader", "reader-" + secrets.token_hex(8), admin=False)
    operator = User("e2e-operator", "operator-" + secrets.token_hex(8), admin=True)
    server = coffer_factory(users=[reader, operator])

    for method, path in (("GET", "/status"), ("POST", "/stop"), ("GET", "/config"), ("POST", "/keys")):
        body = error(admin(server, method, path, creds=reader.credentials), 403, "AccessDenied")
        assert reader.secret_key not in json.dumps(body)
    assert ok(admin(server, "GET", "/status", creds=operator.credentials))["status"] == "Running"
    assert any("e2e-reader" in line and "denied" in line for line in audit_lines(server))

    refused = server.admin_cli("kms", "stop", creds=reader.credentials, check=False)
    assert refused.returncode == 1, refused
    assert json.loads(refused.stdout)["status"] == 403
    assert ok(admin(server, "GET", "/status"))["status"] == "Running"  # the refused stop changed nothing


def test_bad_signature_is_refused(coffer):
    wrong = Credentials(coffer.root.access_key, coffer.root.secret_key + "x")
    reply = admin(coffer, "GET", "/status", creds=wrong)
    assert reply.status == 403, reply
    assert "SignatureDoesNotMatch" in reply.text, reply.text


def test_unsigned_requests_are_refused(coffer):
    for method in ("GET", "POST"):
        request = urllib.request.Request(coffer.endpoint + ADMIN + "/status", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403
        assert b"AccessDenied" in refused.value.read()


def test_awscurl_default_service_is_not_s3(coffer):
    """The troubleshooting entry: without --service s3, awscurl signs for execute-api and s3s answers 501."""
    creds = coffer.root
    result = run([tool("awscurl"), "-v", "--region", "us-east-1", "--access_key", creds.access_key,
                  "--secret_key", creds.secret_key, coffer.endpoint + ADMIN + "/status"], clean_environment(),
                 check=False)
    assert awscurl_status(result) == 501, result.stdout


# ---- bad input ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, code, field", [
    ({"backend_type": "local", "key_dir": "/tmp/k", "cache_size": 5}, "UnknownField", "cache_size"),
    ({"backend_type": "local", "key_dir": "/tmp/k", "timeout_seconds": "soon"}, "InvalidField", "timeout_seconds"),
    ({"key_dir": "/tmp/k"}, "MissingField", "backend_type"),
    ({"backend_type": "vault-transit", "auth_method": {"Token": {"token": "t"}}}, "MissingField", "address"),
    ({"backend_type": "vault", "address": "http://127.0.0.1:1", "auth_method": {"Token": {"tok": "t"}}},
     "MissingField", "auth_method.Token.token"),
    ({"backend_type": "local", "key_dir": "/tmp/k", "address": "http://127.0.0.1:1"}, "InvalidField", "address"),
    ({"backend_type": "sqlite"}, "InvalidField", "backend_type"),
    ({"backend_type": "local"}, "InvalidConfig", "key_dir"),
])
def test_bad_configure_bodies_name_the_field(coffer_factory, body, code, field):
    server = coffer_factory()
    ok(admin(server, "POST", "/stop"))
    before = ok(admin(server, "GET", "/config"))
    answer = error(admin(server, "POST", "/configure", body), 400, code)
    assert answer["field"] == field, answer
    assert f"`{field}`" in answer["message"] or code == "InvalidConfig", answer
    assert "soon" not in answer["message"]
    assert ok(admin(server, "GET", "/config")) == before  # nothing half-applied
    assert ok(admin(server, "GET", "/status"))["status"] == "Stopped"


def test_malformed_bodies_and_parameters(coffer):
    error(admin(coffer, "POST", "/reconfigure", "{not json"), 400, "MalformedJSON")
    error(admin(coffer, "POST", "/reconfigure", "[]"), 400, "MalformedJSON")
    error(admin(coffer, "POST", "/reconfigure"), 400, "MissingBody")
    error(admin(coffer, "GET", "/keys?limit=0"), 400, "InvalidQuery")
    error(admin(coffer, "GET", "/keys?colour=red"), 400, "InvalidQuery")
    error(admin(coffer, "POST", "/start", {"now": True}), 400, "UnexpectedBody")
    error(admin(coffer, "POST", "/keys", {"name": "x"}), 400, "UnknownField")
    error(admin(coffer, "POST", "/keys", {"key_id": "../escape"}), 400, "InvalidKeyId")
    error(admin(coffer, "GET", "/nothing-here"), 404, "UnknownEndpoint")
    error(admin(coffer, "PUT", "/status"), 405, "MethodNotAllowed")


@pytest.mark.openbao
def test_secrets_are_never_echoed(coffer_factory, openbao):
    server = coffer_factory()
    token_body = vault_body(openbao)
    reset(server, token_body)
    config = ok(admin(server, "GET", "/config"))
    assert json.dumps(config).count("***") >= 1
    assert openbao.token not in json.dumps(config)

    # a refused body carrying a secret does not echo it either
    leaked = "leak-" + secrets.token_hex(8)
    refused = admin(server, "POST", "/reconfigure", {**token_body, "auth_method": {"Token": {"token": [leaked]}}})
    assert refused.status == 400 and leaked not in refused.text, refused
    refused = admin(server, "POST", "/reconfigure", {**token_body, "auth_method": {"Token": {"token": leaked}},
                                                      "surprise": True})
    assert refused.status == 400 and leaked not in refused.text, refused
    assert leaked not in server.log() and openbao.token not in server.log()


# ---- keys --------------------------------------------------------------------------------------------------------

def test_key_management_round_trip(coffer_factory):
    server = coffer_factory()
    reset(server, local_body(server))

    named = ok(admin(server, "POST", "/keys", {"key_id": "orders", "description": "order data"}))
    assert named["key_id"] == "orders" and named["state"] == "Enabled" and named["current_version"] == 1
    assert named["description"] == "order data"
    generated = ok(admin(server, "POST", "/keys"))
    assert generated["key_id"] and generated["key_id"] != "orders"
    error(admin(server, "POST", "/keys", {"key_id": "orders"}), 409, "KeyAlreadyExists")

    first = ok(admin(server, "GET", "/keys?limit=1"))
    assert len(first["keys"]) == 1 and first["next_marker"], first
    rest = ok(admin(server, "GET", f"/keys?limit=1000&marker={first['next_marker']}"))
    listed = {key["key_id"] for key in first["keys"] + rest["keys"]}
    assert {"orders", generated["key_id"]} <= listed, listed

    described = ok(admin(server, "GET", "/keys/orders"))
    assert described["created_at"] and described["versions"][0]["version"] == 1
    rotated = ok(admin(server, "POST", "/keys/orders/rotate"))
    assert rotated["current_version"] == 2 and [v["version"] for v in rotated["versions"]] == [1, 2]
    assert ok(admin(server, "POST", "/keys/orders/disable"))["state"] == "Disabled"
    assert ok(admin(server, "POST", "/keys/orders/enable"))["state"] == "Enabled"
    pending = ok(admin(server, "DELETE", "/keys/orders?pending_window_days=7"))
    assert pending["state"] == "PendingDeletion" and pending["deletion_date"], pending
    restored = ok(admin(server, "POST", "/keys/orders/cancel-deletion"))
    assert restored["state"] != "PendingDeletion" and restored["deletion_date"] is None, restored

    error(admin(server, "GET", "/keys/no-such-key"), 404, "KeyNotFound")
    error(admin(server, "POST", "/keys/no-such-key/rotate"), 404, "KeyNotFound")
    lines = audit_lines(server)
    for action in ("kms.key.create", "kms.key.rotate", "kms.key.disable", "kms.key.enable", "kms.key.delete",
                   "kms.key.cancel-deletion"):
        assert any(action in line and "orders" in line for line in lines), f"no audit line for {action}"


def test_minio_key_endpoints(coffer_factory):
    server = coffer_factory()
    minio = "/minio/admin/v3/kms"
    key_id = unique_name("mk")
    created = ok(admin(server, "POST", f"/key/create?key-id={key_id}", prefix=minio))
    assert created["key_id"] == key_id
    assert ok(admin(server, "GET", f"/key/status?key-id={key_id}", prefix=minio)) == {"key-id": key_id}
    names = [entry["name"] for entry in ok(admin(server, "GET", "/key/list", prefix=minio))]
    assert key_id in names
    matching = ok(admin(server, "GET", f"/key/list?pattern={key_id[:4]}*", prefix=minio))
    assert [entry["name"] for entry in matching] == [key_id]
    error(admin(server, "POST", "/key/create", prefix=minio), 400, "MissingParameter")
    error(admin(server, "GET", "/key/status?key-id=absent-key", prefix=minio), 404, "KeyNotFound")
    ok(admin(server, "POST", f"/keys/{key_id}/disable"))
    error(admin(server, "GET", f"/key/status?key-id={key_id}", prefix=minio), 409, "KeyDisabled")


# ---- the CLI does what awscurl does ------------------------------------------------------------------------------

def test_cli_does_everything_awscurl_does(coffer_factory, tmp_path):
    server = coffer_factory()

    def cli_json(*args: str):
        return json.loads(server.admin_cli(*args).stdout)

    stable = ("status", "healthy", "backend_type", "default_key_id")  # counters move with every call
    via_cli, via_awscurl = cli_json("kms", "status"), ok(admin(server, "GET", "/status"))
    assert {k: via_cli[k] for k in stable} == {k: via_awscurl[k] for k in stable}
    table = server.admin_cli("kms", "status", json_output=False).stdout
    assert table.startswith("status") and "Running" in table.splitlines()[0], table

    cli_json("kms", "stop")
    body = local_body(server)
    config_file = tmp_path / "kms.json"
    config_file.write_text(json.dumps(body))
    configured = cli_json("kms", "configure", "--file", str(config_file))
    assert configured["status"] == "Configured", configured
    assert cli_json("kms", "start")["status"] == "Running"
    assert cli_json("kms", "clear-cache")["cache"]["entry_count"] == 0
    config = cli_json("kms", "config")
    assert body["master_key"] not in json.dumps(config) and body["key_dir"] in json.dumps(config)
    reconfigured = cli_json("kms", "reconfigure", "--file", str(config_file))
    assert reconfigured["status"] == "Running"

    created = cli_json("kms", "key", "create", "cli-key", "--description", "from the CLI")
    assert created["key_id"] == "cli-key" and created["description"] == "from the CLI"
    assert cli_json("kms", "key", "create")["key_id"]
    assert "cli-key" in [key["key_id"] for key in cli_json("kms", "key", "list", "--limit", "1000")["keys"]]
    assert cli_json("kms", "key", "describe", "cli-key")["current_version"] == 1
    assert cli_json("kms", "key", "rotate", "cli-key")["current_version"] == 2
    assert cli_json("kms", "key", "disable", "cli-key")["state"] == "Disabled"
    assert cli_json("kms", "key", "enable", "cli-key")["state"] == "Enabled"
    deleted = cli_json("kms", "key", "delete", "cli-key", "--pending-window-days", "7")
    assert deleted["state"] == "PendingDeletion" and deleted["deletion_date"]
    assert cli_json("kms", "key", "cancel-deletion", "cli-key")["deletion_date"] is None

    listing = server.admin_cli("kms", "key", "list", json_output=False).stdout
    assert listing.splitlines()[0].split()[:2] == ["KEY", "ID"] and "cli-key" in listing, listing

    # errors: exit 1, the API's JSON error on stdout with --json, a readable line on stderr
    missing = server.admin_cli("kms", "key", "describe", "no-such-key", check=False)
    assert missing.returncode == 1
    answer = json.loads(missing.stdout)
    assert (answer["status"], answer["code"]) == (404, "KeyNotFound") and "no-such-key" in answer["message"], answer
    assert "KeyNotFound" in missing.stderr, missing.stderr
    conflict = server.admin_cli("kms", "configure", "--file", str(config_file), check=False, json_output=False)
    assert conflict.returncode == 1 and "409" in conflict.stderr and "reconfigure" in conflict.stderr, conflict
    assert body["master_key"] not in server.log()


def test_cli_reports_local_problems_with_exit_2(coffer):
    no_creds = run([str(coffer_binary()), "admin", "kms", "status", "--endpoint", coffer.endpoint],
                   clean_environment(), check=False)
    assert no_creds.returncode == 2 and "credentials" in no_creds.stderr, no_creds
    no_file = coffer.admin_cli("kms", "configure", "--file", "/nonexistent/kms.json", check=False)
    assert no_file.returncode == 2, no_file
    unreachable = run([str(coffer_binary()), "admin", "kms", "status", "--endpoint", "http://127.0.0.1:9",
                       "--access-key", "a", "--secret-key", "b"], clean_environment(), check=False)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr, unreachable


# ---- the spec ----------------------------------------------------------------------------------------------------

def test_openapi_spec_validates():
    result = run([tool("openapi-spec-validator"), str(SPEC)], clean_environment(), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.openbao
def test_the_config_cli_prints_is_accepted_back_and_secrets_can_be_files(coffer_factory, openbao, tmp_path):
    """`coffer admin kms config --json` → `reconfigure --file`: the redacted token keeps its value; then the same
    document with the token in a file instead."""
    server = coffer_factory()
    reset(server, vault_body(openbao, cache_ttl_seconds=42))
    shown = tmp_path / "config.json"
    shown.write_text(server.admin_cli("kms", "config").stdout)
    assert openbao.token not in shown.read_text() and "***" in shown.read_text()
    status = json.loads(server.admin_cli("kms", "reconfigure", "--file", str(shown)).stdout)
    assert (status["status"], status["healthy"]) == ("Running", True), status
    ok(admin(server, "POST", "/keys", {"key_id": unique_name("kept")}))  # the kept token still works
    assert ok(admin(server, "GET", "/config"))["cache"]["ttl_seconds"] == 42

    token_file = tmp_path / "bao-token"
    token_file.write_text(openbao.token + "\n")
    document = json.loads(shown.read_text())
    store = document["default_store"]
    document["stores"][store]["auth"] = {"method": "token-file", "path": str(token_file)}
    shown.write_text(json.dumps(document))
    status = json.loads(server.admin_cli("kms", "reconfigure", "--file", str(shown)).stdout)
    assert (status["status"], status["healthy"]) == ("Running", True), status
    assert ok(admin(server, "GET", "/config"))["stores"][store]["auth"] == {"method": "token-file",
                                                                           "path": str(token_file)}
    ok(admin(server, "POST", "/keys", {"key_id": unique_name("from-file")}))

    # A redacted secret with nothing to keep (another method in force) is refused, naming the field.
    document["stores"][store]["auth"] = {"method": "app-role", "role_id": "r", "secret_id": "***"}
    answer = error(admin(server, "POST", "/reconfigure", document), 400, "InvalidConfig")
    assert answer["field"] == "secret_id", answer
