"""The OpenBao fixtures the KMS, SSE and admin tests build on: a real dev server with transit, stoppable as a group."""

from __future__ import annotations

import base64
import json
import os

import pytest

pytestmark = pytest.mark.openbao


def test_transit_round_trip(openbao):
    openbao.bao("write", "-f", "transit/keys/fixture-check", "type=aes256-gcm96")
    plaintext = base64.b64encode(b"fixture plaintext").decode()
    sealed = json.loads(openbao.bao("write", "-format=json", "transit/encrypt/fixture-check",
                                    f"plaintext={plaintext}").stdout)["data"]["ciphertext"]
    assert sealed.startswith("vault:v1:")
    opened = json.loads(openbao.bao("write", "-format=json", "transit/decrypt/fixture-check",
                                    f"ciphertext={sealed}").stdout)["data"]["plaintext"]
    assert base64.b64decode(opened) == b"fixture plaintext"
    assert openbao.audit_log.exists(), "the audit device records transit calls (used to count KMS calls)"
    assert "transit/encrypt/fixture-check" in openbao.audit_log.read_text()


def test_private_server_seals_and_stops_as_a_group(openbao_factory):
    bao = openbao_factory()
    assert bao.health_status() == 200
    bao.bao("operator", "seal")
    assert bao.health_status() == 503
    pgid = os.getpgid(bao.process.pid)
    bao.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # nothing of the group survives, not even the real binary behind the wrapper
