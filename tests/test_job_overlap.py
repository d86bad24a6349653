"""Two runs of one job at once, a worker told to stop mid-job, a database restart under a worker: nothing
is lost, nothing is doubled, and the work goes on. Real worker processes, real signals."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from sqlalchemy import select, text

from app.errors import WorkInterrupted
from app.state import app_state
from tests import images
from tests.helpers import QUICK_RECOVERY, defer_check_storage, job_row, report, upload_all, wait_until


def _job(flask_app, task_name: str) -> dict:
    from app.extensions import db

    with flask_app.app_context(), db.engine.connect() as conn:
        return conn.execute(text("SELECT id, status, attempts FROM procrastinate_jobs WHERE task_name = :t "
                                 "ORDER BY id DESC LIMIT 1"), {"t": task_name}).mappings().first()


def _set(client, admin, imageset_id) -> dict:
    return client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()


def _start_finishing(client, admin, image_set, worker) -> dict:
    files = {f"batch/{i:04d}.png": images.png(seed=i, width=16, height=16) for i in range(300)}
    files["batch/dup.png"] = files["batch/0007.png"]
    upload_all(image_set["dropbox_url"], files)
    moved = client.put(f"/api/v1/image_sets/{image_set['imageset_id']}", json={"new_status": "finished"}, headers=admin)
    assert moved.status_code == 202, moved.text
    wait_until(lambda: _set(client, admin, image_set["imageset_id"])["progress"]["done"] >= 30, timeout=60,
               message="finishing to be under way")
    assert worker.poll() is None
    return files


def _assert_every_image_has_its_blob(client, admin, flask_app, image_set) -> None:
    """Exact counts, every catalogued image's blob present (each one checked), no orphan copies."""
    from app.extensions import db
    from app.models import Image

    imageset_id = image_set["imageset_id"]
    done = wait_until(lambda: (lambda s: s if s["status"] in ("finished", "failed") else None)(
        _set(client, admin, imageset_id)), timeout=120, message="finishing to end")
    assert done["status"] == "finished", done
    assert done["progress"] == {"total": 301, "done": 301, "accepted": 300, "duplicates": 1, "rejected": 0, "failed": 0}
    outcome = report(client, admin, imageset_id)
    assert len(outcome) == 301 and outcome["batch/dup.png"]["image_id"] == outcome["batch/0007.png"]["image_id"]

    storage = app_state(flask_app).storage
    with flask_app.app_context():
        paths = set(db.session.scalars(select(Image.blobstorage_path).where(Image.imageset_id == imageset_id)))
    assert len(paths) == 300
    stored = {b.name for b in storage.container_client.list_blobs(name_starts_with=f"imagesets/{image_set['title']}/")}
    assert sorted(paths - stored) == []  # a catalogued image without its bytes is data lost
    assert stored == paths  # and no orphan copies
    for path in sorted(paths):
        assert storage.container_client.get_blob_client(path).exists(), path


def test_one_finishing_job_run_by_two_workers_at_once_loses_no_blob(client, admin, image_set, start_worker, flask_app):
    from app import jobs
    from app.extensions import db

    files = {f"batch/{i:04d}.png": images.png(seed=i, width=16, height=16) for i in range(300)}
    files["batch/dup.png"] = files["batch/0007.png"]
    upload_all(image_set["dropbox_url"], files)
    moved = client.put(f"/api/v1/image_sets/{image_set['imageset_id']}", json={"new_status": "finished"}, headers=admin)
    assert moved.status_code == 202, moved.text
    # Forced: a second run of the same work queued beside the first (as stalled-job recovery does to a
    # worker it wrongly believes dead), and two workers that take one each at the same moment.
    with flask_app.app_context():
        jobs.defer("finish_image_set", imageset_id=image_set["imageset_id"])
        db.session.commit()
    workers = [start_worker(capture_output=True, finish_batch_size=10, finish_concurrency=2, worker_concurrency=1)
               for _ in range(2)]

    _assert_every_image_has_its_blob(client, admin, flask_app, image_set)
    with flask_app.app_context(), db.engine.connect() as conn:
        wait_until(lambda: conn.execute(text(
            "SELECT array_agg(DISTINCT status::text) FROM procrastinate_jobs WHERE task_name = 'finish_image_set'"
        )).scalar_one() == ["succeeded"], timeout=30, message="both runs to succeed")
    assert all(w.poll() is None for w in workers)
    # The runs did overlap: one found the other holding the set and waited for it.
    waited = [w for w in workers if "another run holds this work" in w.output.read_text()]
    assert len(waited) == 1


def test_sigterm_mid_finishing_hands_the_job_to_another_worker(client, admin, image_set, start_worker, flask_app,
                                                               settings):
    stopping = start_worker(finish_batch_size=10, finish_concurrency=2,
                            capture_output=True)
    _start_finishing(client, admin, image_set, stopping)
    start_worker(finish_batch_size=10, finish_concurrency=2)

    signalled = time.monotonic()
    stopping.send_signal(signal.SIGTERM)
    stopping.wait(timeout=30)
    output = stopping.output.read_text()
    took = time.monotonic() - signalled
    # It stops between batches once its grace is over, well before the hard stop and the stalled limit.
    assert stopping.returncode == 0, output[-2000:]
    assert took < settings.worker_shutdown_grace_seconds + settings.worker_hard_stop_margin_seconds, output[-2000:]
    assert "finishing stopped between batches" in output
    assert _set(client, admin, image_set["imageset_id"])["progress"]["done"] < 301  # it was stopped mid-way

    _assert_every_image_has_its_blob(client, admin, flask_app, image_set)
    job = _job(flask_app, "finish_image_set")
    assert job["status"] == "succeeded" and job["attempts"] >= 1


def test_a_stuck_job_does_not_keep_a_stopping_worker(flask_app, start_worker, silent_server, settings):
    """A job stuck in a call that never returns cannot stop between batches: the worker exits anyway after
    the grace and its margin, and the job runs again elsewhere (its locks went with the process)."""
    from app.embedded.azurite import connection_string

    job_id = defer_check_storage(flask_app)
    stuck = start_worker(azure_storage_connection_string=connection_string("127.0.0.1", silent_server),
                         capture_output=True)
    wait_until(lambda: job_row(flask_app, job_id)["status"] == "doing", timeout=30, message="the job to start")
    signalled = time.monotonic()
    stuck.send_signal(signal.SIGTERM)
    stuck.wait(timeout=30)
    output = stuck.output.read_text()
    limit = settings.worker_shutdown_grace_seconds + settings.worker_hard_stop_margin_seconds
    assert limit - 0.5 < time.monotonic() - signalled < limit + 5
    assert stuck.returncode == 1
    assert "did not stop within the shutdown grace" in output

    start_worker(**QUICK_RECOVERY)  # notices the dead worker's silence sooner
    wait_until(lambda: job_row(flask_app, job_id)["status"] == "succeeded", timeout=60,
               message="the job to run again on a healthy worker")


def test_worker_rides_out_a_database_restart(flask_app, start_worker, pg_server):
    if pg_server is None:
        pytest.skip("TEST_DATABASE_URL points at a server this test may not restart")
    from app.extensions import db

    worker = start_worker()
    first = defer_check_storage(flask_app)
    wait_until(lambda: job_row(flask_app, first)["status"] == "succeeded", timeout=30, message="a first job")
    with flask_app.app_context():
        db.session.remove()
        db.engine.dispose()
    pg_server.stop()
    time.sleep(2)  # the worker's listener and pool see the database go
    pg_server.start()  # same data directory, same port

    second = defer_check_storage(flask_app)
    wait_until(lambda: job_row(flask_app, second)["status"] == "succeeded", timeout=60,
               message="a job deferred after the restart to run")
    assert worker.poll() is None


def test_status_counts_live_workers_by_the_recovery_rule_and_names_them(flask_app, start_worker, settings_overrides):
    from app.extensions import db
    from app.factory import create_app
    from app.settings import load

    # The workers and the app answering /info/status share one (quicker) rule.
    settings = load(**{**settings_overrides, **QUICK_RECOVERY})
    client = create_app(settings).test_client()

    def job_queue() -> dict:
        return client.get("/info/status").json()["checks"]["job_queue"]

    kept, doomed = start_worker(**QUICK_RECOVERY), start_worker(**QUICK_RECOVERY)
    wait_until(lambda: f":{kept.pid}" in job_queue()["message"] and f":{doomed.pid}" in job_queue()["message"],
               timeout=30, message="both workers to be listed with host and pid")
    assert job_queue()["message"].startswith("2 workers alive")

    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    killed = time.monotonic()
    wait_until(lambda: job_queue()["message"].startswith("1 worker alive"), timeout=30,
               message="the killed worker to stop counting")
    # Counted out by the same limit after which its jobs are re-queued, not a minute later.
    assert time.monotonic() - killed < settings.worker_stalled_after_seconds + 3
    assert f":{doomed.pid}" not in job_queue()["message"]

    def rows() -> int:
        with flask_app.app_context(), db.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar_one()

    wait_until(lambda: rows() == 1, timeout=4 * settings.worker_stalled_after_seconds + 15,
               message="the dead worker's row to be pruned")


# --- the lock itself -----------------------------------------------------------------------------------

def test_second_run_waits_for_the_first_and_stops_when_asked(app_context):
    from app.jobs.exclusive import exclusive

    order, first_in = [], threading.Event()

    def run(name: str, hold: float) -> None:
        with app_context.app_context():
            with exclusive("test", 42, should_stop=lambda: False):
                order.append(f"{name} in")
                first_in.set()
                time.sleep(hold)
                order.append(f"{name} out")

    first = threading.Thread(target=run, args=("first", 1.0))
    first.start()
    first_in.wait(5)
    second = threading.Thread(target=run, args=("second", 0))
    second.start()
    first.join()
    second.join()
    assert order == ["first in", "first out", "second in", "second out"]

    with exclusive("test", 7, should_stop=lambda: False):
        def blocked() -> None:
            with app_context.app_context():
                with exclusive("test", 7, should_stop=lambda: True):
                    pass
        errors = []
        thread = threading.Thread(target=lambda: _capture(blocked, errors))
        thread.start()
        thread.join(5)
        assert len(errors) == 1 and isinstance(errors[0], WorkInterrupted)


def _capture(fn, errors: list) -> None:
    try:
        fn()
    except Exception as exc:
        errors.append(exc)
