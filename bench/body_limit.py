"""What a 200 MB body costs the API now that bodies are capped while they arrive (MAX_JSON_BODY_BYTES).

One uvicorn process serves main:app as `make run` does (the header-capping protocol, lifespan on), on its own
PostgreSQL and Azurite. A labeler sends PUT /campaigns/{id}/objects with a 200 MB body (Content-Length
declared, then streamed as fast as the socket takes it), again and again; meanwhile another client times
GET /api/v1/me. Printed: the API's resident memory before and at its peak, and the other requests' p99
against a baseline measured in the same run with no large body in flight. Goal: RSS + < 50 MB, p99 + < 100 ms.
Also a 200 MB header, unauthenticated (the protocol refuses it after 64 KiB).
Run: make bench, or .venv/bin/python bench/body_limit.py
"""
from __future__ import annotations

import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BODY_BYTES = 200 * 1024 * 1024
WINDOW_SECONDS = 8  # how long each phase (baseline, under attack) is timed


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def time_requests(client, headers, stop: threading.Event) -> list[float]:
    samples = []
    while not stop.is_set():
        started = time.perf_counter()
        response = client.get("/api/v1/me", headers=headers)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return samples


def send_large(port: int, head: bytes, total: int) -> tuple[int, int]:
    """Send `head` then up to `total` bytes; the status the server answered and how much it took first."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)
        block = b" " * (1024 * 1024)
        try:
            sock.sendall(head)
            while sent < total:
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass  # the server answered and hung up
        try:
            answer = sock.recv(4096)
        except OSError:
            answer = b""
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else 0
    return status, sent


def attack(port: int, head: bytes, total: int, stop, sent_counter) -> None:
    """In a process of its own, so the timing client never waits for the attacker's GIL."""
    while not stop.is_set():
        status, sent = send_large(port, head, total)
        sent_counter.put((status, sent))


def measure(client, headers, port, rss, head=None, total=0) -> dict:
    import multiprocessing

    stop, results, peak = multiprocessing.Event(), multiprocessing.Queue(), [rss()]
    attackers = [multiprocessing.Process(target=attack, args=(port, head, total, stop, results))] if head else []

    def sample_rss():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample_rss)
    for worker in (*attackers, sampler):
        worker.start()
    timer = threading.Timer(WINDOW_SECONDS, stop.set)
    timer.start()
    samples = time_requests(client, headers, stop)
    sampler.join()
    attacks = []
    while any(a.is_alive() for a in attackers) or not results.empty():
        try:
            attacks.append(results.get(timeout=0.5))
        except Exception:
            pass
    for attacker in attackers:
        attacker.join()
    return {"p99": p99(samples), "median": statistics.median(samples), "peak": peak[0], "attacks": attacks}


def main() -> None:
    import httpx
    import psutil

    from _harness import served_api

    with served_api("--http", "app.limits:HeadLimitedHttpTools", "--log-level", "error") as api:
        admin, port = api.admin, api.port
        process = psutil.Process(api.server.pid)

        def rss() -> int:
            return process.memory_info().rss

        with httpx.Client(base_url=api.base_url) as client:
            campaign = client.post("/api/v1/campaigns", headers=admin, json={
                "title": "bench", "labeler_email": "labeler@example.org"}).json()
            token = campaign["access_token"]
            labeler = {"Authentication-Key": token["apikey"], "Authentication-Secret": token["apisecret"]}
            client.put(f"/api/v1/campaigns/{campaign['campaign_id']}", headers=admin, json={"new_status": "active"})
            for _ in range(200):  # warm
                client.get("/api/v1/me", headers=labeler)
            body_head = (f"PUT /api/v1/campaigns/{campaign['campaign_id']}/objects HTTP/1.1\r\nHost: bench\r\n"
                         f"Content-Type: application/json\r\nAuthentication-Key: {labeler['Authentication-Key']}\r\n"
                         f"Authentication-Secret: {labeler['Authentication-Secret']}\r\n"
                         f"Content-Length: {BODY_BYTES}\r\n\r\n").encode()
            header_head = b"GET /api/v1/me HTTP/1.1\r\nHost: bench\r\nX-Huge: "
            baseline = measure(client, labeler, port, rss)
            body = measure(client, labeler, port, rss, body_head, BODY_BYTES)
            header = measure(client, labeler, port, rss, header_head, BODY_BYTES)
            after = rss()

    mb = 1024 * 1024
    print(f"baseline            GET /me p99 {baseline['p99'] * 1e3:7.2f} ms (median {baseline['median'] * 1e3:.2f} ms), "
          f"API RSS {baseline['peak'] / mb:.0f} MB")
    for name, run in (("200 MB body", body), ("200 MB header", header)):
        statuses = sorted({status for status, _ in run["attacks"]})
        taken = statistics.median(sent for _, sent in run["attacks"]) / mb
        print(f"{name:<19} GET /me p99 {run['p99'] * 1e3:7.2f} ms  ratio {run['p99'] / baseline['p99']:5.2f}x  "
              f"(+{(run['p99'] - baseline['p99']) * 1e3:.1f} ms; goal < +100 ms)")
        print(f"{'':<19} API RSS peak {run['peak'] / mb:.0f} MB  ratio {run['peak'] / baseline['peak']:5.2f}x  "
              f"(+{(run['peak'] - baseline['peak']) / mb:.1f} MB; goal < +50 MB); {len(run['attacks'])} sent, "
              f"answered {statuses}, median {taken:.1f} MB written before the server hung up")
    print(f"API RSS after both   {after / mb:.0f} MB  ratio {after / baseline['peak']:5.2f}x")


if __name__ == "__main__":
    main()
