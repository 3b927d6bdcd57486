"""Fixtures for the end-to-end suite: the real `coffer` release binary, a real OpenBao dev server, and private
PostgreSQL servers and SeaweedFS clusters.

- `coffer`          session-wide server with default settings (root user from COFFER_ROOT_USER/PASSWORD).
- `coffer_factory`  starts extra servers with extra flags/env, a users file or TLS; each is stopped (SIGTERM) at the
                    end of the test and must exit 0.
- `bucket`          a fresh bucket on `coffer` for one test.
- `openbao`         session-wide OpenBao dev server with transit enabled; `openbao_factory` for a private one.
- `postgres`        session-wide private PostgreSQL server (tests make their own databases on it);
                    `postgres_factory` for private ones a test may kill or stop.
- `seaweedfs`       session-wide SeaweedFS cluster serving S3 (tests use their own buckets); `seaweedfs_factory` for
                    private ones.
- `files`           random files of a given size, shared by the session (`files(1 << 20)` → Path).

Every server stopped by a fixture is checked for a graceful exit (status 0 after SIGTERM; SIGINT for PostgreSQL) and,
for PostgreSQL and SeaweedFS, for leaving no process behind. Under xdist each worker has its own session servers, on
ports of their own. They start only when a test asks for them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from harness import (CofferFactory, CofferServer, OpenBao, PostgresServer, SeaweedFs, start_openbao, start_postgres,
                     start_seaweedfs, stop_e2e_data_cluster, unique_name, write_random_file)


def pytest_configure(config):
    # boto3 inside the test process must not see the developer's AWS config either.
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/coffer-e2e/aws"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session", autouse=True)
def _e2e_data_cluster():
    """Stops the SeaweedFS cluster of COFFER_E2E_DATA=s3 (harness.e2e_data_cluster) after every server of the
    session: fixtures set up after this one are torn down before it."""
    yield
    stop_e2e_data_cluster()


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


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> PostgresServer:
    """Shared private PostgreSQL server. Tests must use their own databases (`postgres.create_database()`)."""
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield server
    server.discard()


def _stop_all(stops: list[Callable[[], None]]) -> None:
    """Runs every stop, even after one fails, then reports all the failures together."""
    failures = []
    for stop in stops:
        try:
            stop()
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def postgres_factory(tmp_path_factory) -> Callable[[], PostgresServer]:
    """Private PostgreSQL servers for tests that stop, kill or restart them; stopped and removed at the test's end."""
    started: list[PostgresServer] = []

    def start() -> PostgresServer:
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
        started.append(server)
        return server

    yield start
    _stop_all([server.discard for server in started])


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory) -> SeaweedFs:
    """Shared SeaweedFS cluster. Tests must use their own buckets."""
    cluster = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield cluster
    cluster.stop()


@pytest.fixture
def seaweedfs_factory(tmp_path_factory) -> Callable[[], SeaweedFs]:
    """Private SeaweedFS clusters for tests that stop or break them; stopped at the test's end."""
    started: list[SeaweedFs] = []

    def start() -> SeaweedFs:
        cluster = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
        started.append(cluster)
        return cluster

    yield start
    _stop_all([cluster.stop for cluster in started])
