"""`make run` (python -m app run) on the embedded defaults: everything green, a killed API or worker is
started again, Ctrl-C leaves nothing behind, and a second start finds the same data."""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from app.embedded.ports import free_port
from tests.helpers import ROOT, directory_postgres_can_reach, env_for, wait_until


def start(data_dir, port):
    env = env_for({"data_dir": data_dir, "port": port, "worker_heartbeat_seconds": 1})
    return subprocess.Popen([sys.executable, "-m", "app", "run"], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ctrl_c(process) -> str:
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output


def processes_using(path) -> list:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(path) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def status_when_green(base: str, timeout: float) -> dict:
    def green():
        try:
            response = httpx.get(f"{base}/info/status", timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    return wait_until(green, timeout=timeout, interval=0.3, message="/info/status to answer 200")


def child(supervisor, marker: str) -> psutil.Process | None:
    """The supervisor's running child whose command line has `marker` ("uvicorn": the API; "worker")."""
    for process in psutil.Process(supervisor.pid).children():
        try:
            if marker in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
                return process
        except psutil.NoSuchProcess:
            pass
    return None


def kill_and_see_it_replaced(supervisor, marker: str, base: str) -> None:
    killed = child(supervisor, marker)
    killed.send_signal(signal.SIGKILL)

    def replaced_and_connected():  # a new process, started far enough to talk to PostgreSQL
        new = child(supervisor, marker)
        return new is not None and new.pid != killed.pid and new.net_connections(kind="tcp")

    wait_until(replaced_and_connected, timeout=30, message=f"a new {marker} process")
    status_when_green(base, timeout=60)


@pytest.fixture
def data_dir():
    with directory_postgres_can_reach("labelstore-make-run-") as home:
        yield home / "var"


@pytest.mark.timeout_sensitive
def test_make_run_serves_outlives_its_children_then_stops_cleanly_and_restarts_on_the_same_data(data_dir):
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    first = start(data_dir, port)
    try:
        body = status_when_green(base, timeout=90)
        assert all(check["ok"] for check in body["checks"].values())
        assert httpx.get(f"{base}/api/v1/ui/").status_code == 200
        key_file = data_dir / "admin-key.json"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        pair = json.loads(key_file.read_text())
        headers = {"Authentication-Key": pair["apikey"], "Authentication-Secret": pair["apisecret"]}
        assert httpx.get(f"{base}/api/v1/me", headers=headers).json()["roles"] == ["admin"]

        # A dead child is started again; the stack keeps serving.
        kill_and_see_it_replaced(first, "uvicorn", base)
        assert httpx.get(f"{base}/api/v1/me", headers=headers).status_code == 200
        kill_and_see_it_replaced(first, "worker", base)
        assert first.poll() is None
        children = psutil.Process(first.pid).children(recursive=True)
    finally:
        output = ctrl_c(first)
    assert first.returncode == 0, output
    assert "Swagger UI:      http://127.0.0.1" in output and "admin-key.json" in output
    assert "Traceback" not in output
    assert "api exited (killed by SIGKILL); starting it again in 1 s" in output, output
    assert "worker exited (killed by SIGKILL); starting it again in 1 s" in output, output
    wait_until(lambda: not processes_using(data_dir), timeout=10, message="embedded services to exit")
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    started = time.monotonic()
    second = start(data_dir, port)
    try:
        status_when_green(base, timeout=60)
        assert time.monotonic() - started < 30
        assert httpx.get(f"{base}/api/v1/me", headers=headers).status_code == 200  # same data, same key
    finally:
        output = ctrl_c(second)
    assert second.returncode == 0, output
    assert "created the first admin" not in output
    wait_until(lambda: not processes_using(data_dir), timeout=10, message="embedded services to exit")
