"""`python -m app worker`: procrastinate's worker, made to survive what production does to it.

Signals stop it gracefully (running jobs get WORKER_SHUTDOWN_GRACE_SECONDS, then stop at a safe point and
are retried; one stuck in a call cannot hold the process past the margin), a lost database restarts it with
backoff, and every worker keeps the queue healthy: records who it is, re-queues the jobs of dead workers and
forgets their rows.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

from procrastinate import PsycopgConnector
from procrastinate.worker import Worker

from app.jobs import (app_context_middleware, load_tasks, procrastinate_app, prune_dead_workers, record_worker,
                      retry_stalled)
from app.settings import Settings

logger = logging.getLogger(__name__)


def run(settings: Settings, flask_app) -> None:
    """Run until SIGTERM or SIGINT."""
    load_tasks()
    connector = PsycopgConnector(conninfo=settings.db_libpq_url,
                                 kwargs={"application_name": "label-store-worker"})
    with procrastinate_app.replace_connector(connector):
        logger.info("worker started", extra={"concurrency": settings.worker_concurrency})
        asyncio.run(_run_worker(settings, flask_app))
    logger.info("worker stopped")


async def _housekeeping_forever(worker, settings: Settings) -> None:
    """Every worker records who it is (host, pid), re-queues the jobs of workers that stopped sending
    heartbeats (killed, lost) and forgets dead workers' rows: all by one rule, WORKER_STALLED_AFTER_SECONDS,
    which /info/status uses too."""
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


async def _run_worker(settings: Settings, flask_app) -> None:
    """Run procrastinate's worker until asked to stop. When it ends on its own (its database connection was
    lost: the listener fails and the worker stops itself) it is started again once the database answers,
    with backoff: a database restart pauses the work, it does not end it."""
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
            async with procrastinate_app.open_async():
                worker = Worker(app=procrastinate_app, name=f"worker-{os.getpid()}", concurrency=settings.worker_concurrency,
                                update_heartbeat_interval=settings.worker_heartbeat_seconds,
                                fetch_job_polling_interval=settings.worker_poll_seconds,
                                stalled_worker_timeout=settings.worker_stalled_after_seconds,
                                shutdown_graceful_timeout=settings.worker_shutdown_grace_seconds,
                                install_signal_handlers=False,
                                task_middleware=[app_context_middleware(flask_app)])
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
