from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class WorkerProcess(db.Model):
    """Which process a procrastinate worker row is: its host and pid, so an operator can find it. Rows go
    with their worker's row when a worker is pruned as dead (app.jobs.prune_dead_workers)."""

    __tablename__ = "worker_processes"

    worker_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # procrastinate_workers.id
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class JobFailure(db.Model):
    """One failed attempt of a background job: its error and traceback (masked like the logs), written by the
    worker as the attempt fails, shown to operators by GET /jobs/{job_id}."""

    __tablename__ = "job_failures"
    __table_args__ = (Index("ix_job_failures_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger)  # procrastinate_jobs.id (no foreign key: its rows may go)
    task: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
