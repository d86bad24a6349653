"""`python -m app migrate` as replicas run it: several at once on a fresh database, and before the database
answers."""
import subprocess
import sys
import time

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from app.embedded.ports import free_port
from tests.helpers import ROOT, env_for


def start_migrate(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", "migrate"], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def scalar(url: str, sql: str):
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.connect() as conn:
            return conn.scalar(text(sql))
    finally:
        engine.dispose()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "app" / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def test_three_concurrent_migrates_on_a_fresh_database_all_succeed(empty_database, settings_overrides):
    env = env_for({**settings_overrides, "db_connection_string": empty_database,
                   "bootstrap_admin_email": "ops@example.org", "bootstrap_admin_key": "bootstrap-ops",
                   "bootstrap_admin_secret": "a-long-random-bootstrap-secret-0123"})
    runs = [start_migrate(env) for _ in range(3)]
    outputs = [run.communicate(timeout=120) for run in runs]

    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err
        assert "Traceback" not in out + err
    assert scalar(empty_database, "SELECT version_num FROM alembic_version") == head_revision()
    assert scalar(empty_database, "SELECT count(*) FROM api_keys WHERE key_id = 'bootstrap-ops'") == 1


def test_migrate_waits_a_bounded_time_for_the_database_then_says_why_in_one_line(settings_overrides):
    port = free_port()  # nothing listens there
    env = env_for({**settings_overrides, "db_connection_string": f"postgresql://ops:pw-not-shown@127.0.0.1:{port}/x",
                   "migrate_wait_seconds": 3})
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert 1.5 < elapsed < 20
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("label-store: database unreachable after 3 s (MIGRATE_WAIT_SECONDS): ")
    assert str(port) in lines[0]
    attempts = [line for line in result.stdout.splitlines() if "database not reachable yet" in line]
    assert len(attempts) >= 2  # one line per attempt
    assert "Traceback" not in result.stdout + result.stderr
    assert "pw-not-shown" not in result.stdout + result.stderr
