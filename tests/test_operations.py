"""What operators see: the job queue, failed jobs queued again, and files ingested per minute."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from tests.helpers import assert_problem, defer_check_storage, job_row, wait_until


def test_failed_jobs_are_listed_and_can_be_queued_again(client, admin, flask_app, start_worker, app_context):
    from app.extensions import db

    failed_job = defer_check_storage(flask_app)
    # as it stands after its last attempt failed
    db.session.execute(text("UPDATE procrastinate_jobs SET status = 'failed', attempts = 8 WHERE id = :id"),
                       {"id": failed_job})
    db.session.commit()
    ok_job = defer_check_storage(flask_app)

    failed = client.get("/api/v1/jobs?status=failed", headers=admin).json()
    assert [(j["job_id"], j["task"], j["attempts"]) for j in failed["jobs"]] == [(failed_job, "check_storage", 8)]
    assert client.get("/api/v1/jobs?task=check_storage", headers=admin).json()["pagination"]["total"] == 2
    assert_problem(client.post(f"/api/v1/jobs/{ok_job}/retry", headers=admin), 409)  # not failed
    assert_problem(client.post("/api/v1/jobs/999999/retry", headers=admin), 404)

    db.session.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": ok_job})  # one at a time
    db.session.commit()
    queued = client.post(f"/api/v1/jobs/{failed_job}/retry", headers=admin)
    assert queued.status_code == 202 and queued.json()["status"] == "todo"
    start_worker()
    wait_until(lambda: job_row(flask_app, failed_job)["status"] == "succeeded", timeout=60, message="the re-run")
    assert client.get("/api/v1/jobs?status=failed", headers=admin).json()["jobs"] == []


def test_files_ingested_per_minute_by_source(client, admin, app_context):
    from app.extensions import db

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    rows = [("dropbox", "accepted", 2, 0), ("dropbox", "rejected", 1, 0), ("upload", "accepted", 3, 0),
            ("url", "failed", 4, 0), ("dropbox", "duplicate", 1, 2),
            ("dropbox", "accepted", 9, 200)]  # the last is older than the window asked for
    for source, outcome, count, minutes_ago in rows:
        db.session.execute(text("INSERT INTO ingest_minutes (minute, source, outcome, count) VALUES (:m, :s, :o, :c)"),
                           {"m": now - timedelta(minutes=minutes_ago), "s": source, "o": outcome, "c": count})
    db.session.commit()
    buckets = client.get("/api/v1/monitoring/ingest?minutes=60", headers=admin).json()["minutes"]
    assert [(b["accepted"], b["duplicate"], b["rejected"], b["failed"]) for b in buckets] == [(0, 1, 0, 0), (5, 0, 1, 4)]
    assert datetime.fromisoformat(buckets[1]["minute"]) == now
    assert buckets[1]["by_source"] == {"dropbox": {"accepted": 2, "duplicate": 0, "rejected": 1, "failed": 0},
                                       "upload": {"accepted": 3, "duplicate": 0, "rejected": 0, "failed": 0},
                                       "url": {"accepted": 0, "duplicate": 0, "rejected": 0, "failed": 4}}
    # /monitoring/finishing, kept for its clients: the dropbox's share, in its old shape
    finishing = client.get("/api/v1/monitoring/finishing?minutes=60", headers=admin).json()["minutes"]
    assert [(b["accepted"], b["duplicate"], b["rejected"]) for b in finishing] == [(0, 1, 0), (2, 0, 1)]
    assert len(client.get("/api/v1/monitoring/ingest?minutes=300", headers=admin).json()["minutes"]) == 3
