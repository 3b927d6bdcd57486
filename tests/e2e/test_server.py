"""The `coffer server` process itself: credentials, users file, configuration sources, logs and graceful shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from harness import (Credentials, User, clean_environment, coffer_binary, free_port, port_accepts, sha256_file,
                     sign_unsigned_payload, unique_name, write_random_file)

MiB = 1 << 20


def test_help_documents_flags():
    result = subprocess.run([str(coffer_binary()), "server", "--help"], capture_output=True, text=True, timeout=60,
                            env=clean_environment())
    assert result.returncode == 0, result.stderr
    for flag in ("--address", "--data", "--config", "--tls-cert", "--tls-key", "--users-file", "--region"):
        assert flag in result.stdout, flag
    assert "COFFER_" in result.stdout, "--help names the environment variables"


def test_default_root_user_on_loopback(coffer_factory):
    """No COFFER_ROOT_* on a loopback bind: admin/admin works, with a warning in the log."""
    server = coffer_factory(root=None)
    assert server.root == Credentials("admin", "admin")
    name = unique_name()
    server.s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in server.s3.list_buckets()["Buckets"]]
    assert "warn" in server.log().lower()


def test_refuses_default_credentials_on_non_loopback_bind(tmp_path):
    env = clean_environment()
    port = free_port()
    process = subprocess.run(
        [str(coffer_binary()), "server", "--address", f"0.0.0.0:{port}", "--data", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert process.returncode != 0
    output = process.stdout + process.stderr
    assert "COFFER_ROOT_USER" in output, f"the refusal must say what to set:\n{output}"


def test_root_credentials_from_env_replace_default(coffer):
    with pytest.raises(ClientError) as error:
        coffer.s3_client(Credentials("admin", "admin")).list_buckets()
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_users_file(coffer_factory):
    alice = User("alice-e2e", "alice-secret-" + "x" * 16, admin=False)
    server = coffer_factory(users=[alice])
    s3 = server.s3_client(alice.credentials)
    name = unique_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"from alice")
    assert server.s3.get_object(Bucket=name, Key="k")["Body"].read() == b"from alice"
    with pytest.raises(ClientError) as error:
        server.s3_client(Credentials(alice.access_key, "wrong")).list_buckets()
    assert error.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_flag_beats_config_file(coffer_factory, tmp_path):
    """The file names one data dir, the command line (--data, given by the fixture) another: the flag wins."""
    from_file = tmp_path / "from-file"
    config = tmp_path / "coffer.toml"
    config.write_text(f'data = "{from_file}"\nregion = "us-east-1"\n')
    server = coffer_factory(args=["--config", str(config)])
    server.s3.create_bucket(Bucket=unique_name())
    assert server.data_dir.is_dir()
    assert not from_file.exists()


def test_config_file_data_dir_used_without_flag(tmp_path):
    """With only the TOML file naming the data dir, the server stores there."""
    from_file = tmp_path / "from-file"
    config = tmp_path / "coffer.toml"
    port = free_port()
    config.write_text(f'address = "127.0.0.1:{port}"\ndata = "{from_file}"\n')
    env = clean_environment()
    env.update(COFFER_ROOT_USER="file-root", COFFER_ROOT_PASSWORD="file-root-secret")
    process = subprocess.Popen([str(coffer_binary()), "server", "--config", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
                               stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while not port_accepts(port):
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "server from config file did not listen"
            time.sleep(0.05)
        assert from_file.is_dir(), "the data dir named in the config file is created"
        assert not (tmp_path / "data").exists(), "the default ./data is not used when the file names one"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_env_overrides_file_and_flag_overrides_env(tmp_path):
    port_file, port_env, port_flag = free_port(), free_port(), free_port()
    config = tmp_path / "coffer.toml"
    config.write_text(f'address = "127.0.0.1:{port_file}"\ndata = "{tmp_path / "data"}"\n')
    env = clean_environment()
    env.update(COFFER_ROOT_USER="p-root", COFFER_ROOT_PASSWORD="p-root-secret", COFFER_ADDRESS=f"127.0.0.1:{port_env}")
    for extra, expected in (([], port_env), (["--address", f"127.0.0.1:{port_flag}"], port_flag)):
        process = subprocess.Popen([str(coffer_binary()), "server", "--config", str(config), *extra], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not port_accepts(expected):
                assert process.poll() is None, f"server exited with {process.returncode}"
                assert time.monotonic() < deadline, f"server did not listen on the expected port {expected}"
                time.sleep(0.05)
            assert not port_accepts(port_file)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0


def test_log_carries_no_secrets(coffer_factory):
    server = coffer_factory()
    name = unique_name()
    server.s3.create_bucket(Bucket=name)
    server.s3.put_object(Bucket=name, Key="logged", Body=b"x")
    with pytest.raises(ClientError):
        server.s3_client(Credentials(server.root.access_key, "a-wrong-secret-value")).list_buckets()
    server.stop_and_check()
    log = server.log()
    request_lines = [line for line in log.splitlines() if "request_id=" in line and "status=" in line]
    assert len(request_lines) >= 3, f"one line per request, with a request id and the status:\n{log[-2000:]}"
    assert any("status=403" in line for line in request_lines)
    assert server.root.secret_key not in log
    assert "a-wrong-secret-value" not in log
    assert "Signature=" not in log


def test_sigterm_finishes_in_flight_download(coffer_factory, tmp_path):
    """Graceful shutdown: a GET that is streaming when SIGTERM arrives still completes, then the process exits 0."""
    server = coffer_factory()
    name = unique_name()
    server.s3.create_bucket(Bucket=name)
    source = write_random_file(tmp_path / "big", 64 * MiB)
    server.s3.upload_file(str(source), name, "big")

    reply = server.s3.get_object(Bucket=name, Key="big")
    stream = reply["Body"]
    target = tmp_path / "download"
    with open(target, "wb") as handle:
        handle.write(stream.read(MiB))  # the response is under way
        server.process.send_signal(signal.SIGTERM)
        while chunk := stream.read(MiB):
            handle.write(chunk)
    assert sha256_file(target) == sha256_file(source)
    assert server.process.wait(timeout=60) == 0


def test_client_disconnect_mid_put_stores_nothing(coffer_factory):
    """A PUT whose client vanishes half-way leaves no object and, once the server notices, no temp file."""
    server = coffer_factory()
    name = unique_name()
    server.s3.create_bucket(Bucket=name)
    size = 8 * MiB
    headers = sign_unsigned_payload(server.root, "PUT", f"{server.endpoint}/{name}/torn", {"Content-Length": str(size)})
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        request = f"PUT /{name}/torn HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(request.encode())
        sock.sendall(b"x" * (size // 2))
    # the server must notice the disconnect on its own; poll through the API rather than sleeping blindly
    with pytest.raises(ClientError) as error:
        server.s3.head_object(Bucket=name, Key="torn")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    server.stop_and_check()
    leftovers = [p for p in server.data_dir.rglob("*") if p.is_file() and p.stat().st_size >= size // 4]
    assert leftovers == [], f"a torn upload left data behind: {leftovers}"
    restarted = coffer_factory(data_dir=server.data_dir)
    assert restarted.s3.list_objects_v2(Bucket=name)["KeyCount"] == 0


def test_sigint_is_a_graceful_stop_too(coffer_factory):
    server = coffer_factory()
    server.s3.create_bucket(Bucket=unique_name())
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=60) == 0, server.log()[-2000:]


def test_restart_keeps_objects(coffer_factory, tmp_path):
    first = coffer_factory()
    name = unique_name()
    first.s3.create_bucket(Bucket=name)
    first.s3.put_object(Bucket=name, Key="durable", Body=b"still here", Metadata={"m": "1"})
    first.stop_and_check()
    second = coffer_factory(data_dir=first.data_dir)
    reply = second.s3.get_object(Bucket=name, Key="durable")
    assert reply["Body"].read() == b"still here"
    assert reply["Metadata"] == {"m": "1"}
