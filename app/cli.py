"""Command line: `python -m app {run,migrate,worker,create-admin,check-settings}`."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.settings import Settings, load_or_exit

logger = logging.getLogger("app.cli")


def psycopg_conninfo(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}"


# --- migrate ------------------------------------------------------------------------------------

# One `migrate` at a time per database (replicas that all migrate at start, a one-shot job run twice):
# a session-level advisory lock, released at the end or when the process dies.
MIGRATE_LOCK_KEY = 0x4C53_4D49  # "LSMI"


def migrate_database(cx_app) -> None:
    """Alembic upgrade to head (procrastinate's schema included), the image container, then the bootstrap
    admin if configured; all under the migrate lock, so concurrent runs wait and then find nothing to do."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app.extensions import db

    with cx_app.app.app_context():
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
            if not lock.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATE_LOCK_KEY}):
                logger.info("another migrate is running on this database; waiting for it")
                lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
            try:
                upgrade()
                cx_app.app.extensions["label_store"].storage.ensure_container()
                settings = cx_app.app.extensions["label_store"].settings
                if settings.bootstrap_admin_email:
                    from app.services.keys import bootstrap_admin

                    created = bootstrap_admin(email=settings.bootstrap_admin_email, key_id=settings.bootstrap_admin_key,
                                              secret=settings.bootstrap_admin_secret.get_secret_value())
                    if created:
                        logger.info("bootstrap admin created", extra={"key_id": created[0].key_id})
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATE_LOCK_KEY})


def wait_for_database(url: str, wait_seconds: float) -> str | None:
    """Connect until the server answers, retrying with backoff for at most `wait_seconds` (a database that
    starts with the service); None once it answered, else the last problem, one line without credentials."""
    import psycopg2

    deadline, delay, attempt = time.monotonic() + wait_seconds, 0.5, 0
    while True:
        attempt += 1
        try:
            psycopg2.connect(psycopg_conninfo(url), connect_timeout=5).close()
            return None
        except psycopg2.OperationalError as exc:
            problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if time.monotonic() + delay > deadline:
            return problem
        logger.warning("database not reachable yet; retrying",
                       extra={"attempt": attempt, "retry_in_seconds": delay, "problem": problem})
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def cmd_migrate(settings: Settings) -> int:
    from app import create_app

    problem = wait_for_database(settings.db_connection_string, settings.migrate_wait_seconds)
    if problem:
        print(f"label-store: database unreachable after {settings.migrate_wait_seconds:g} s "
              f"(MIGRATE_WAIT_SECONDS): {problem}", file=sys.stderr)
        return 1
    migrate_database(create_app(settings))
    logger.info("database at head")
    return 0


# --- worker -------------------------------------------------------------------------------------

async def _housekeeping_forever(worker, settings: Settings) -> None:
    """Every worker records who it is (host, pid), re-queues the jobs of workers that stopped sending
    heartbeats (killed, lost) and forgets dead workers' rows: all by one rule, WORKER_STALLED_AFTER_SECONDS,
    which /info/status uses too."""
    from app.jobs import prune_dead_workers, record_worker, retry_stalled

    recorded = None
    while True:
        await asyncio.sleep(max(0.5, settings.worker_stalled_after_seconds / 3))
        try:
            if worker.worker_id is not None and worker.worker_id != recorded:
                await record_worker(worker.app, worker.worker_id)
                recorded = worker.worker_id
            await retry_stalled(worker.app, settings.worker_stalled_after_seconds, exclude_worker=worker.worker_id)
            await prune_dead_workers(worker.app, settings.worker_stalled_after_seconds)
        except Exception as exc:
            logger.warning("worker housekeeping failed; will try again", extra={"reason": str(exc)[:200]})


def _hard_stop_after(seconds: float) -> None:
    """Jobs are told to stop once the grace is over (they stop between batches); one stuck in a call that
    does not return must not keep the process, and the job, hostage. Its lock goes with the process and
    another worker re-runs it."""
    def stop():
        logger.error("jobs did not stop within the shutdown grace; exiting now (they run again elsewhere)",
                     extra={"seconds": seconds})
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()


async def _run_worker(settings: Settings) -> None:
    """Run procrastinate's worker until asked to stop. When it ends on its own (its database connection was
    lost: the listener fails and the worker stops itself) it is started again once the database answers,
    with backoff: a database restart pauses the work, it does not end it."""
    from procrastinate.worker import Worker

    from app.jobs import queue

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    current: list = []

    def on_signal(signum: int) -> None:
        if stop.is_set():
            return
        grace = settings.worker_shutdown_grace_seconds
        logger.info("worker stopping: running jobs get the shutdown grace, then stop between batches",
                    extra={"signal": signal.Signals(signum).name, "grace_seconds": grace})
        stop.set()
        for worker in current:
            worker.stop()
        _hard_stop_after(grace + settings.worker_hard_stop_margin_seconds)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    backoff = 1.0
    while not stop.is_set():
        try:
            async with queue.open_async():
                worker = Worker(app=queue, name=f"worker-{os.getpid()}", concurrency=settings.worker_concurrency,
                                update_heartbeat_interval=settings.worker_heartbeat_seconds,
                                stalled_worker_timeout=settings.worker_stalled_after_seconds,
                                shutdown_graceful_timeout=settings.worker_shutdown_grace_seconds,
                                install_signal_handlers=False)
                current[:] = [worker]
                housekeeping = asyncio.create_task(_housekeeping_forever(worker, settings))
                try:
                    await worker.run()
                    backoff = 1.0
                finally:
                    housekeeping.cancel()
        except Exception as exc:
            logger.warning("worker lost its database; starting again when it answers",
                           extra={"reason": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                                  "retry_in_seconds": backoff})
        if stop.is_set():
            break
        logger.warning("worker loop ended without a stop request; restarting", extra={"retry_in_seconds": backoff})
        try:
            await asyncio.wait_for(stop.wait(), timeout=backoff)
        except asyncio.TimeoutError:
            pass
        backoff = min(backoff * 2, 30.0)


def cmd_worker(settings: Settings) -> int:
    from procrastinate import PsycopgConnector

    from app import create_app
    from app.jobs import import_tasks, queue

    create_app(settings)
    import_tasks()
    connector = PsycopgConnector(conninfo=psycopg_conninfo(settings.db_connection_string),
                                 kwargs={"application_name": "label-store-worker"})
    with queue.replace_connector(connector):
        logger.info("worker started", extra={"concurrency": settings.worker_concurrency})
        asyncio.run(_run_worker(settings))
    logger.info("worker stopped")
    return 0


# --- create-admin -------------------------------------------------------------------------------

def cmd_create_admin(settings: Settings, email: str) -> int:
    from app import create_app
    from app.services.keys import create_key

    cx = create_app(settings)
    with cx.app.app_context():
        key, secret = create_key(roles=["admin"], email=email, description="created with python -m app create-admin")
    print(json.dumps({"apikey": key.key_id, "apisecret": secret, "email": email}))
    return 0


# --- run (development supervisor) ---------------------------------------------------------------

def _secret_file(path: Path) -> str:
    """A random value kept in a 0600 file, made on first use."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


def _bootstrap_embedded_admin(cx_app, data_dir: Path) -> None:
    from app.services.keys import admin_exists, create_key

    target = data_dir / "admin-key.json"
    with cx_app.app.app_context():
        if admin_exists():
            if target.exists():
                print(f"  admin key pair:  {target}")
            return
        key, secret = create_key(roles=["admin"], email="admin@localhost", description="first admin (make run)")
    target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"apikey": key.key_id, "apisecret": secret, "email": "admin@localhost"}, f, indent=2)
    print(f"  created the first admin; its key pair is in {target} (mode 0600)")


def cmd_run(settings: Settings) -> int:
    from app.embedded.azurite import Azurite
    from app.embedded.postgres import EmbeddedPostgres

    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    services: list = []
    children: list[subprocess.Popen] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if settings.embedded_database:
            pg = EmbeddedPostgres(data_dir / "postgres").start()
            services.append(pg)
            env["DB_CONNECTION_STRING"] = pg.create_database("labelstore")
        if settings.embedded_storage:
            azurite = Azurite(data_dir / "azurite").start()
            services.append(azurite)
            env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        if not settings.api_key_pepper:
            env["API_KEY_PEPPER"] = _secret_file(data_dir / "api-key-pepper")
        os.environ.update(env)
        resolved = load_or_exit()

        from app import create_app

        cx_app = create_app(resolved)
        migrate_database(cx_app)
        print("Label Store is starting:")
        if not resolved.bootstrap_admin_email:
            _bootstrap_embedded_admin(cx_app, data_dir)
        children.append(subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env))
        children.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "main:app", "--host", resolved.host, "--port", str(resolved.port),
             "--no-access-log", "--log-level", "warning"], env=env))
        print(f"  Swagger UI:      http://{resolved.host}:{resolved.port}/api/v1/ui")
        print(f"  status:          http://{resolved.host}:{resolved.port}/info/status")
        print("  Ctrl-C stops everything.", flush=True)
        while not stopping:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                logger.error("a child process exited; stopping", extra={"args": dead[0].args[2:4]})
                return 1
            time.sleep(0.3)
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for service in reversed(services):
            service.stop()
        print("Label Store stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Label Store")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start embedded services (when not configured), API and worker; Ctrl-C stops all")
    sub.add_parser("migrate", help="apply database migrations and create the bootstrap admin if configured")
    sub.add_parser("worker", help="run a background job worker")
    admin = sub.add_parser("create-admin", help="create an admin key and print its pair once, as JSON")
    admin.add_argument("--email", required=True)
    sub.add_parser("check-settings", help="validate the settings and exit")
    args = parser.parse_args(argv)

    from app import logs

    settings = load_or_exit(need_servers=args.command not in ("run", "check-settings"))
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "check-settings":
        print("settings OK")
        return 0
    if args.command == "run":
        return cmd_run(settings)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "worker":
        return cmd_worker(settings)
    return cmd_create_admin(settings, args.email)
