from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, func
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
