"""The PostgreSQL fixtures the metadata-engine tests build on: private servers started from the distribution's own
programs, on loopback ports of their own, reached with the real psql, stopped and killed by PID."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from harness import port_is_free, run

pytestmark = pytest.mark.postgres


def psql_url(postgres, url: str, sql: str, check: bool = True):
    """psql given nothing but a URL, as an application would be: proves `url` is complete on its own."""
    return run([str(postgres.bin_dir / "psql"), "--no-psqlrc", "--no-align", "--tuples-only", f"--dbname={url}",
                f"--command={sql}"], postgres.env(), check=check, timeout=60)


def test_table_round_trip_through_psql(postgres):
    database = postgres.create_database()
    postgres.psql("CREATE TABLE objects (key text PRIMARY KEY, size bigint NOT NULL);\n"
                  "INSERT INTO objects VALUES ('a/1', 10), ('a/2', 20), ('b/1', 30);\n"
                  "UPDATE objects SET size = size + 1 WHERE key LIKE 'a/%';", database=database)
    rows = postgres.psql("SELECT key, size FROM objects ORDER BY key;", database=database).stdout.splitlines()
    assert rows == ["a/1|11", "a/2|21", "b/1|30"]
    # a failing statement stops the script: nothing after it runs, and psql says why
    failed = postgres.psql("INSERT INTO objects VALUES ('a/1', 0);\nDELETE FROM objects;", database=database,
                           check=False)
    assert failed.returncode != 0 and "duplicate key" in failed.stderr
    assert postgres.psql("SELECT count(*) FROM objects;", database=database).stdout.strip() == "3"


def test_url_reaches_the_database_over_loopback_with_the_password(postgres):
    database = postgres.create_database()
    url = postgres.url_for(database)
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("postgres", "127.0.0.1", postgres.port,
                                                                      f"/{database}")
    answer = psql_url(postgres, url, "SELECT current_database(), current_user, inet_server_addr(), "
                                     "inet_server_port(), current_setting('listen_addresses')").stdout.strip()
    assert answer == f"{database}|{postgres.user}|127.0.0.1|{postgres.port}|127.0.0.1"
    assert urlsplit(postgres.url).path == f"/{postgres.database}"

    refused = psql_url(postgres, url.replace(postgres.password, "not-the-password"), "SELECT 1", check=False)
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr


def test_private_servers_are_separate_and_stop_completely(postgres_factory):
    first, second = postgres_factory(), postgres_factory()
    assert first.port != second.port and first.data_dir != second.data_dir
    first.psql("CREATE TABLE only_in_first (n int);")
    assert second.psql("SELECT to_regclass('only_in_first') IS NULL;").stdout.strip() == "t"

    processes = first.processes()
    assert len(processes) > 1, "the postmaster and its background processes"
    first.stop()
    assert not [process for process in processes if process.alive()]
    assert port_is_free(first.port)
    assert second.psql("SELECT 1;").stdout.strip() == "1", "stopping one server leaves the other serving"


def test_kill_leaves_no_process_and_a_restart_recovers_committed_rows(postgres_factory):
    server = postgres_factory()
    server.psql("CREATE TABLE acknowledged (n int);\nINSERT INTO acknowledged SELECT generate_series(1, 1000);")
    processes = server.processes()
    server.kill()
    assert not [process for process in processes if process.alive()]
    assert port_is_free(server.port)

    server.start()
    assert server.psql("SELECT count(*), sum(n) FROM acknowledged;").stdout.strip() == "1000|500500"
    assert "automatic recovery in progress" in server.log_path.read_text()
