"""Which KMS configuration a server starts with (docs/kms.md, "Which configuration wins"): start-up settings complete
a saved configuration but never replace its store, a conflict stops the server with a message instead, and the
embedded default keeps working whatever directory the server is started from."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import unique_name
from sse_helpers import kms_admin_ok, random_bytes
from test_sse_openbao import vault_server_args

BODY = random_bytes(70_001, seed=51)


@pytest.mark.openbao
def test_settings_tune_a_saved_vault_store_and_a_conflicting_store_stops_the_start(coffer_factory, openbao):
    first = coffer_factory(**vault_server_args(openbao, unique_name("saved-default")))
    bucket = unique_name("kms-saved")
    first.s3.create_bucket(Bucket=bucket)
    first.s3.put_object(Bucket=bucket, Key="obj", Body=BODY, ServerSideEncryption="aws:kms")
    first.stop_and_check()
    config_file = first.data_dir / ".coffer" / "kms" / "config.json"
    saved = config_file.read_bytes()

    # A tuning flag alone (no backend, no Vault token in the environment): the saved Vault store stays in force.
    tuned = coffer_factory(data_dir=first.data_dir, args=["--kms-cache", "false"])
    status = kms_admin_ok(tuned, "GET", "/status")
    assert (status["backend_type"], status["status"], status["cache"]["enabled"]) == ("vault-transit", "Running",
                                                                                      False), status
    assert tuned.s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == BODY
    tuned.stop_and_check()

    # Settings that name another store: the server refuses to start and leaves the saved configuration alone.
    saved = config_file.read_bytes()
    with pytest.raises(RuntimeError) as refused:
        coffer_factory(data_dir=first.data_dir,
                       args=["--kms-backend", "local", "--kms-key-dir", str(first.sandbox / "other-keys")])
    message = str(refused.value)
    assert "saved KMS configuration is Vault transit at " + openbao.address in message, message
    assert "--kms-replace-saved-config" in message, message
    assert config_file.read_bytes() == saved
    assert not (first.sandbox / "other-keys").exists()

    again = coffer_factory(data_dir=first.data_dir)
    assert again.s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == BODY


def test_the_embedded_default_works_from_any_working_directory(coffer_factory):
    # Started with a relative data directory (the README's `./data`), resolved against the server's working dir.
    first = coffer_factory(data_dir=Path("../relative-data"))
    data_dir = first.sandbox / "relative-data"
    bucket = unique_name("kms-cwd")
    first.s3.create_bucket(Bucket=bucket)
    first.s3.put_object(Bucket=bucket, Key="s3", Body=BODY, ServerSideEncryption="AES256")
    first.s3.put_object(Bucket=bucket, Key="kms", Body=BODY, ServerSideEncryption="aws:kms")
    shown = kms_admin_ok(first, "GET", "/config")
    for field in ("key_dir", "master_key_file"):
        assert Path(shown["stores"]["local"][field]).is_absolute(), shown
    first.stop_and_check()

    # The same data directory, from another working directory.
    second = coffer_factory(data_dir=data_dir)
    assert second.sandbox != first.sandbox
    assert second.s3.get_object(Bucket=bucket, Key="s3")["Body"].read() == BODY
    assert second.s3.get_object(Bucket=bucket, Key="kms")["Body"].read() == BODY
