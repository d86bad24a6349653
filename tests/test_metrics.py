"""/metrics: requests by OpenAPI operationId and status, summed over gunicorn's worker processes; the job
queue and finishing throughput read from the database at scrape time."""
import concurrent.futures
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.embedded.ports import free_port
from tests.helpers import ROOT, env_for, wait_until


def samples(body: str) -> dict:
    """{(name, frozenset(labels)): value} of one scrape."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def requests_of(scrape: dict, operation: str, status: str) -> float:
    return sum(v for (name, labels), v in scrape.items() if name == "labelstore_http_requests_total"
               and ("operation", operation) in labels and ("status", status) in labels)


def test_requests_are_counted_by_operation_id_and_status(live_server, admin):
    # A real uvicorn server: its requests carry no ASGI "extensions", where a test client's do.
    def scrape():
        return samples(httpx.get(f"{live_server}/metrics").text)

    before = scrape()
    for _ in range(3):
        assert httpx.get(f"{live_server}/info/version").status_code == 200
    assert httpx.get(f"{live_server}/api/v1/me", headers=admin).status_code == 200
    assert httpx.get(f"{live_server}/api/v1/me").status_code == 401
    after = scrape()

    def added(operation, status):
        return requests_of(after, operation, status) - requests_of(before, operation, status)

    assert added("app.api.info.version", "200") == 3
    assert added("app.api.keys.me", "200") == 1
    assert added("app.api.keys.me", "401") == 1
    assert added("unrouted", "200") == 0
    assert any(name == "labelstore_http_request_duration_seconds_bucket" and ("operation", "app.api.keys.me") in labels
               for name, labels in after)


def defer_by_name(task: str, **configure) -> int:
    from app.extensions import db
    from app.jobs import procrastinate_app

    job_id = procrastinate_app.configure_task(name=task, connection=db.session.connection(), **configure).defer(imageset_id=1)
    db.session.commit()
    return job_id


def test_job_queue_by_task_and_status_and_the_oldest_waiting_job(client, app_context):
    from app.extensions import db

    now = datetime.now(timezone.utc)
    defer_by_name("finish_image_set")  # due now
    defer_by_name("finish_image_set", schedule_at=now - timedelta(minutes=5))  # due 5 minutes ago, still waiting
    defer_by_name("finish_image_set", schedule_at=now + timedelta(hours=1))  # not due yet
    failed = defer_by_name("build_dataset")
    db.session.execute(text("UPDATE procrastinate_jobs SET status = 'failed', attempts = 8 WHERE id = :id"),
                       {"id": failed})
    db.session.commit()

    scrape = samples(client.get("/metrics").text)
    assert scrape[("labelstore_jobs", frozenset({("task", "finish_image_set"), ("status", "todo")}))] == 3
    assert scrape[("labelstore_jobs", frozenset({("task", "build_dataset"), ("status", "failed")}))] == 1
    assert 295 <= scrape[("labelstore_job_queue_oldest_age_seconds", frozenset())] <= 330
    assert scrape[("labelstore_database_scrape_success", frozenset())] == 1


def test_oldest_age_is_zero_with_an_empty_queue(client):
    scrape = samples(client.get("/metrics").text)
    assert scrape[("labelstore_job_queue_oldest_age_seconds", frozenset())] == 0
    assert not [k for k in scrape if k[0] == "labelstore_jobs"]


def test_files_finished_in_the_last_minute_by_outcome(client, image_set, app_context):
    from app.extensions import db

    rows = [("accepted", "now()")] * 5 + [("rejected", "now()")] * 2 + [("accepted", "now() - interval '5 minutes'")]
    for i, (outcome, when) in enumerate(rows):
        db.session.execute(text("INSERT INTO finish_reports (imageset_id, name, outcome, date_processed) "
                                f"VALUES (:set, :name, :outcome, {when})"),
                           {"set": image_set["imageset_id"], "name": f"f{i}.jpg", "outcome": outcome})
    db.session.commit()
    scrape = samples(client.get("/metrics").text)
    finished = {dict(labels)["outcome"]: value for (name, labels), value in scrape.items()
                if name == "labelstore_finishing_files_last_minute"}
    assert finished == {"accepted": 5, "duplicate": 0, "rejected": 2}


def test_scrape_answers_without_the_database_metrics_when_the_database_is_down(settings_overrides, processes,
                                                                              tmp_path, connexion_app):
    # An API whose database is unreachable: the scrape still answers, and says the database part is missing.
    from app.embedded.ports import wait_for_port

    port, dead_db = free_port(), free_port()
    url = settings_overrides["db_connection_string"].rsplit("@", 1)
    broken = f"{url[0]}@127.0.0.1:{dead_db}/{url[1].split('/', 1)[1]}"
    env = env_for({**settings_overrides, "db_connection_string": broken})
    processes.start([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port), "--log-level", "warning"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port)
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=15)
    assert response.status_code == 200
    scrape = samples(response.text)
    assert scrape[("labelstore_database_scrape_success", frozenset())] == 0
    assert not [k for k in scrape if k[0].startswith(("labelstore_jobs", "labelstore_job_queue"))]


def _stale_counter(directory, value: float) -> None:
    """What a worker of an earlier run left behind: it must not be added to this run's counts."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    stale = MmapedDict(str(directory / "counter_4242424.db"))
    stale.write_value(mmap_key("labelstore_http_requests_total", "labelstore_http_requests_total",
                               ["method", "operation", "status"], ["GET", "app.api.info.version", "200"],
                               "HTTP requests answered, by OpenAPI operationId and status"), value, 0)
    stale.close()


def _worker_class() -> str:
    try:
        import uvicorn_worker  # noqa: F401

        return "uvicorn_worker.UvicornWorker"
    except ImportError:
        return "uvicorn.workers.UvicornWorker"


def test_counters_are_summed_over_gunicorn_worker_processes(tmp_path, settings_overrides, processes, connexion_app):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    _stale_counter(metrics_dir, 1000)
    port = free_port()
    env = env_for({**settings_overrides, "prometheus_multiproc_dir": metrics_dir})
    log = (tmp_path / "gunicorn.log").open("w")
    server = processes.start([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "-w", "2",
                              "-k", _worker_class(), "-b", f"127.0.0.1:{port}", "main:app"],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def version_ok():
        try:  # a probe is answered or refused before the next one: none is still in flight when counting starts
            return httpx.get(f"{base}/info/version", timeout=30).status_code == 200
        except (httpx.ConnectError, httpx.RemoteProtocolError):  # not listening yet; a worker still booting
            return False

    wait_until(version_ok, timeout=60, message="gunicorn to answer")
    # Counted from here: the probes were answered, and counted, before.
    before = requests_of(samples(httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text),
                         "app.api.info.version", "200")
    assert 1 <= before < 100  # the planted stale 1000 was wiped at start
    sent = 0

    def request(_):
        # a fresh connection each time, so both workers take some
        return httpx.get(f"{base}/info/version", headers={"Connection": "close"}, timeout=10).status_code

    def worker_pids():
        return {p.name.split("_")[1].split(".")[0] for p in metrics_dir.glob("counter_*.db")} - {"4242424"}

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for _ in range(30):
            assert set(pool.map(request, range(32))) == {200}
            sent += 32
            if len(worker_pids()) >= 2:
                break
    assert len(worker_pids()) == 2, "both gunicorn workers should have answered some requests"

    scrapes = [samples(httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text)
               for _ in range(8)]
    assert [requests_of(s, "app.api.info.version", "200") for s in scrapes] == [before + sent] * 8
    server.terminate()
    server.wait(30)
    log.close()
    output = (tmp_path / "gunicorn.log").read_text()
    assert "Booting worker" in output and "\x1b[" not in output, output[-3000:]


def test_multiproc_dir_must_be_in_the_environment(tmp_path, monkeypatch):
    from app.settings import SettingsError, load

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    try:
        load(prometheus_multiproc_dir=tmp_path)
    except SettingsError as refused:
        assert refused.variable == "PROMETHEUS_MULTIPROC_DIR" and "environment" in refused.problem
    else:
        raise AssertionError("a directory prometheus_client does not know of was accepted")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert load(prometheus_multiproc_dir=tmp_path).prometheus_multiproc_dir == tmp_path



def test_a_request_is_counted_before_its_answer_reaches_the_client():
    """A scrape made as soon as an answer arrives includes that answer (gunicorn's probes rely on it)."""
    import asyncio

    from prometheus_client import REGISTRY

    from app.middleware import RequestContextMiddleware

    def counted():
        return sum(s.value for f in REGISTRY.collect() for s in f.samples if s.name == "labelstore_http_requests_total")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    at_start = []

    async def client(message):
        if message["type"] == "http.response.start":
            at_start.append(counted())

    before = counted()
    scope = {"type": "http", "method": "GET", "path": "/api/v1/me", "headers": []}
    asyncio.run(RequestContextMiddleware(app)(scope, None, client))
    assert at_start == [before + 1]
    assert counted() == before + 1  # once
