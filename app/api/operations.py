from app.api import iso
from app.services import operations


def job_out(row) -> dict:
    return {"job_id": row["id"], "task": row["task_name"], "arguments": row["args"], "status": row["status"],
            "attempts": row["attempts"], "queue": row["queue_name"],
            "scheduled_at": iso(row["scheduled_at"]),
            "last_event": row["last_event"],
            "last_event_at": iso(row["last_event_at"])}


def list_jobs(page=1, per_page=50, status=None, task=None):
    result = operations.list_jobs(page=page, per_page=per_page, status=status, task=task)
    return {"pagination": result.pagination, "jobs": [job_out(r) for r in result.items]}


def retry_job(job_id):
    return job_out(operations.retry_job(job_id)), 202


def get_job(job_id):
    job, failures = operations.get_job(job_id)
    return {**job_out(job), "failures": [{**f, "at": iso(f["at"])} for f in failures]}


def queue():
    counts, workers = operations.queue()
    return {"counts": counts, "workers": [{**w, "started_at": iso(w["started_at"]),
                                           "last_heartbeat": iso(w["last_heartbeat"])} for w in workers]}


def finishing_histogram(minutes=60):
    return {"minutes": [{**row, "minute": row["minute"].isoformat()} for row in operations.finishing_histogram(minutes)]}


def ingest_histogram(minutes=60):
    return {"minutes": [{**row, "minute": row["minute"].isoformat()} for row in operations.ingest_histogram(minutes)]}
