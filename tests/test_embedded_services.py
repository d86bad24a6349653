"""The embedded services `make run` and the tests start: PostgreSQL lets in only who has its password (kept
in a 0600 file), and Azurite sends no telemetry."""
import stat

import psutil
import psycopg2
import pytest

from app.embedded.postgres import EmbeddedPostgres
from tests.helpers import directory_postgres_can_reach


def refused_without_password(**where) -> bool:
    try:
        psycopg2.connect(user="postgres", dbname="postgres", connect_timeout=5, **where).close()
    except psycopg2.OperationalError as refused:
        return "password" in str(refused)
    return False


def test_embedded_postgres_lets_in_only_who_has_its_password(pg_server):
    if pg_server is None:
        pytest.skip("TEST_DATABASE_URL is set: no embedded PostgreSQL in this session")
    assert refused_without_password(host=pg_server.host, port=pg_server.port)
    assert refused_without_password(host=str(pg_server.datadir), port=pg_server.port)  # its Unix socket
    assert stat.S_IMODE(pg_server.password_file.stat().st_mode) == 0o600
    psycopg2.connect(pg_server.url()).close()


def test_a_data_directory_that_trusted_every_local_user_gets_a_password():
    with directory_postgres_can_reach("labelstore-pg-trust-") as home:
        server = EmbeddedPostgres(home / "data", fast=True).start()
        server.stop()
        # As a data directory made before passwords were required: every local user trusted, no password file.
        (server.datadir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        server.password_file.unlink()
        again = EmbeddedPostgres(home / "data", fast=True)
        try:
            again.start()
            assert refused_without_password(host=again.host, port=again.port)
            assert stat.S_IMODE(again.password_file.stat().st_mode) == 0o600
            psycopg2.connect(again.url()).close()
        finally:
            again.stop()


def test_embedded_azurite_runs_without_telemetry(azurite):
    if azurite is None:
        pytest.skip("TEST_AZURE_STORAGE_CONNECTION_STRING is set: no embedded Azurite in this session")
    assert "--disableTelemetry" in psutil.Process(azurite.process.pid).cmdline()
