"""One run at a time per piece of work, even when the queue hands the same job to two workers.

A job can run twice at once: a worker that is told to stop may still be inside its job when another
worker re-queues that job as stalled. Each task therefore holds a PostgreSQL advisory lock named after
what it changes (an image set, a dataset version) for its whole run, on a connection of its own. The
lock belongs to that connection, so a killed worker releases it the moment its connection closes; a
second run waits for it (checking whether it should stop), then finds the work done or resumes it.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import text

from app.errors import WorkInterrupted
from app.extensions import db

logger = logging.getLogger(__name__)


@contextmanager
def exclusive(kind: str, key: int, *, should_stop: Callable[[], bool], poll_seconds: float = 0.25) -> Iterator[None]:
    """Hold the advisory lock (`kind`, `key`) while the block runs; wait for it while another run has it."""
    params = {"kind": kind, "key": key}
    conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        waited = False
        while not conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:kind), :key)"), params).scalar_one():
            if not waited:
                logger.warning("another run holds this work; waiting for it", extra={"lock": f"{kind}:{key}"})
                waited = True
            if should_stop():
                raise WorkInterrupted(f"stopped while waiting for {kind} {key}")
            time.sleep(poll_seconds)
        if waited:
            logger.info("took over the work after the other run", extra={"lock": f"{kind}:{key}"})
        yield
        conn.execute(text("SELECT pg_advisory_unlock(hashtext(:kind), :key)"), params)
    except BaseException:
        conn.invalidate()  # closing the session releases the lock whatever state the connection is in
        raise
    finally:
        conn.close()


@contextmanager
def try_exclusive(kind: str, key: int) -> Iterator[bool]:
    """Hold the advisory lock (`kind`, `key`) while the block runs if nobody else has it: yields whether it
    was taken (a worker skipping work that another is doing)."""
    params = {"kind": kind, "key": key}
    conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        taken = conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:kind), :key)"), params).scalar_one()
        yield taken
        if taken:
            conn.execute(text("SELECT pg_advisory_unlock(hashtext(:kind), :key)"), params)
    except BaseException:
        conn.invalidate()
        raise
    finally:
        conn.close()
