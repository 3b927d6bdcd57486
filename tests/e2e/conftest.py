"""Fixtures for the end-to-end suite: the real `coffer` release binary and a real OpenBao dev server.

- `coffer`          session-wide server with default settings (root user from COFFER_ROOT_USER/PASSWORD).
- `coffer_factory`  starts extra servers with extra flags/env, a users file or TLS; each is stopped (SIGTERM) at the
                    end of the test and must exit 0.
- `bucket`          a fresh bucket on `coffer` for one test.
- `openbao`         session-wide OpenBao dev server with transit enabled; `openbao_factory` for a private one.
- `files`           random files of a given size, shared by the session (`files(1 << 20)` → Path).

Every server stopped by a fixture is checked for a graceful exit (status 0 after SIGTERM).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from harness import CofferFactory, CofferServer, OpenBao, start_openbao, unique_name, write_random_file


def pytest_configure(config):
    # boto3 inside the test process must not see the developer's AWS config either.
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/coffer-e2e/aws"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def _session_factory(tmp_path_factory):
    factory = CofferFactory(tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def coffer(_session_factory) -> CofferServer:
    """The shared server with default settings. Tests on it must use their own buckets."""
    return _session_factory()


@pytest.fixture
def coffer_factory(tmp_path_factory) -> Callable[..., CofferServer]:
    factory = CofferFactory(tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture
def bucket(coffer) -> str:
    name = unique_name()
    coffer.s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> Callable[[int], Path]:
    """files(size) → a random file of that many bytes, created once per session and reused (read-only!)."""
    directory = tmp_path_factory.mktemp("files")
    made: dict[int, Path] = {}

    def get(size: int) -> Path:
        if size not in made:
            made[size] = write_random_file(directory / f"random-{size}.bin", size)
            made[size].chmod(0o444)
        return made[size]

    return get


@pytest.fixture(scope="session")
def openbao(tmp_path_factory) -> OpenBao:
    """Shared OpenBao dev server, transit enabled. Tests must use their own transit key names."""
    bao = start_openbao(tmp_path_factory.mktemp("openbao"))
    yield bao
    bao.stop()


@pytest.fixture
def openbao_factory(tmp_path_factory) -> Callable[..., OpenBao]:
    """Private OpenBao servers for tests that seal, stop or otherwise break them (`start_openbao`'s arguments)."""
    started: list[OpenBao] = []

    def start(port: int | None = None, token: str | None = None) -> OpenBao:
        bao = start_openbao(tmp_path_factory.mktemp("openbao"), port, token)
        started.append(bao)
        return bao

    yield start
    for bao in started:
        bao.stop()
