"""Durable jobs: deferred with the transaction, run by a worker process, retried after failure,
and picked up again when the worker running them is killed."""
import os
import signal

from app.embedded.azurite import Azurite, connection_string
from tests.helpers import QUICK_RECOVERY, defer_check_storage, job_row, wait_until


def test_defer_joins_the_transaction(flask_app):
    job_id = defer_check_storage(flask_app, commit=False)
    assert job_row(flask_app, job_id) is None


def test_job_is_retried_with_backoff_after_a_failure(tmp_path, flask_app, start_worker, settings):
    azurite = Azurite(tmp_path / "azurite").start()
    port = azurite.port
    from app.storage import BlobStorage

    BlobStorage(connection_string=azurite.connection_string, container=settings.azure_storage_imageset_container
                ).ensure_container()
    azurite.stop()  # storage is down when the job first runs

    job_id = defer_check_storage(flask_app)
    start_worker(azure_storage_connection_string=connection_string("127.0.0.1", port),
                 azure_storage_retries=0)  # the job's own retry is under test, not the SDK's
    wait_until(lambda: (job_row(flask_app, job_id) or {}).get("attempts", 0) >= 1, timeout=60,
               message="the first attempt to fail")
    assert job_row(flask_app, job_id)["status"] in ("todo", "doing")  # failed, scheduled again

    restarted = Azurite(tmp_path / "azurite", port=port).start()  # storage is back
    try:
        wait_until(lambda: job_row(flask_app, job_id)["status"] == "succeeded", timeout=60,
                   message="the retry to succeed")
        assert job_row(flask_app, job_id)["attempts"] >= 2
    finally:
        restarted.stop()


def test_job_of_a_killed_worker_runs_again(flask_app, start_worker, silent_server):
    job_id = defer_check_storage(flask_app)
    # The first worker's storage never answers: the job hangs in it.
    doomed = start_worker(azure_storage_connection_string=connection_string("127.0.0.1", silent_server))
    wait_until(lambda: job_row(flask_app, job_id)["status"] == "doing", timeout=30, message="the job to start")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()

    start_worker(**QUICK_RECOVERY)  # a healthy worker notices the dead one's silence and re-runs its job
    wait_until(lambda: job_row(flask_app, job_id)["status"] == "succeeded", timeout=60,
               message="the stalled job to be re-run")
