"""SIGHUP reloads the users file, the TLS certificate and key, and the config file's log level without a restart,
with one log line each time. A part that does not load (a certificate whose key does not match, an unparsable log
level) is refused and the old one stays in force; the server keeps serving."""

from __future__ import annotations

import secrets
import shutil
import signal
import ssl
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from harness import CofferServer, User, make_tls_files, unique_name, write_users_file


def sighup(server: CofferServer) -> str:
    """Sends SIGHUP and returns the reload's log line once it is there."""
    before = server.log().count("SIGHUP:")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while server.log().count("SIGHUP:") == before:
        assert server.process.poll() is None, f"the server ended on SIGHUP:\n{server.log()[-2000:]}"
        assert time.monotonic() < deadline, f"no reload line 20 s after SIGHUP:\n{server.log()[-2000:]}"
        time.sleep(0.05)
    assert server.process.poll() is None
    return [line for line in server.log().splitlines() if "SIGHUP:" in line][-1]


def served_certificate(server: CofferServer) -> str:
    """The certificate the server presents now (PEM), read without verifying it."""
    return ssl.get_server_certificate(("127.0.0.1", server.port), timeout=10)


def pem(path: Path) -> str:
    return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(path.read_text()))


def test_sighup_presents_a_new_certificate_and_refuses_a_mismatched_pair(coffer_factory, tmp_path):
    server = coffer_factory(tls=True)
    assert served_certificate(server) == pem(server.tls.cert)

    renewed = make_tls_files(tmp_path / "renewed")  # another CA, another key
    shutil.copy(renewed.cert, server.tls.cert)
    shutil.copy(renewed.key, server.tls.key)
    line = sighup(server)
    assert "TLS certificate" in line and "refused" not in line, line
    assert served_certificate(server) == pem(renewed.cert)
    server.tls.ca_cert = renewed.ca_cert  # clients now trust only the new CA
    bucket = unique_name("renewed")
    server.s3_client().create_bucket(Bucket=bucket)

    stranger = make_tls_files(tmp_path / "stranger")
    shutil.copy(stranger.cert, server.tls.cert)  # the key on disk is still the renewed one: they do not match
    line = sighup(server)
    assert "refused" in line and "TLS certificate" in line, line
    assert served_certificate(server) == pem(renewed.cert)
    assert server.s3_client().head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_sighup_reloads_the_users_file(coffer_factory):
    alice = User(unique_name("alice"), secrets.token_hex(16))
    server = coffer_factory(users=[alice])
    bucket = unique_name("users")
    server.s3_client(alice.credentials).create_bucket(Bucket=bucket)

    bob = User(unique_name("bob"), secrets.token_hex(16), admin=True)
    write_users_file(server.sandbox / "users.toml", [bob])
    assert "users file (2 users)" in sighup(server)
    assert server.s3_client(bob.credentials).head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as refused:
        server.s3_client(alice.credentials).list_buckets()
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    (server.sandbox / "users.toml").write_text("[[user]]\naccess_key = \"carol\"\n")  # no secret: does not load
    line = sighup(server)
    assert "refused" in line and "users file" in line, line
    assert server.s3_client(bob.credentials).head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_sighup_rereads_the_log_level_from_the_config_file(coffer_factory, tmp_path):
    config = tmp_path / "coffer.toml"
    config.write_text('log-level = "warn"\n')
    server = coffer_factory(args=["--config", str(config)])
    quiet = unique_name("quiet")
    server.s3.create_bucket(Bucket=quiet)
    assert quiet not in server.log(), "request lines are info: not logged at warn"

    config.write_text('log-level = "info"\n')
    assert "log level `info`" in sighup(server)
    loud = unique_name("loud")
    server.s3.create_bucket(Bucket=loud)
    assert loud in server.log()

    config.write_text('log-level = "coffer_server=loudest"\n')
    line = sighup(server)
    assert "refused" in line and "log level" in line, line
    still = unique_name("still")
    server.s3.create_bucket(Bucket=still)
    assert still in server.log(), "a refused log level must leave the old one in force"
