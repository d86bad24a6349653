"""What authentication adds to a request: an authenticated endpoint against an open one, same server.

One uvicorn worker process serves main:app as in production (lifespan on, so the key is read on the serving
event loop through psycopg's async pool, no thread hop). GET /info/version (open) and GET /api/v1/me
(authenticated; answered from the authentication itself) do about the same handler work, so the difference
is Connexion's security middleware calling our apiKey handler for both headers, one prepared, indexed row
read, an HMAC and the role check. Requests of every kind are interleaved (each sees the same machine
noise), in RUNS runs; the overhead printed is the median of the runs' medians.
Also times LabelAPI's way (bcrypt cost 12 per request) for scale, and unknown key vs wrong secret.
Run: make bench, or .venv/bin/python bench/auth_overhead.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N = 1000  # rounds per run
RUNS = 5


def timed(client, requests: dict, n=N) -> dict:
    """Median time of each (path, headers), measured interleaved so every kind sees the same machine noise."""
    samples = {name: [] for name in requests}
    statuses = {}
    for round_ in range(n + 100):
        for name, (path, headers) in requests.items():
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            if round_ >= 100:  # the first rounds warm up
                samples[name].append(time.perf_counter() - started)
            statuses[name] = response.status_code
    return {name: (statistics.median(values), statuses[name]) for name, values in samples.items()}


def main() -> None:
    import httpx

    from _harness import served_api

    with served_api("--log-level", "warning") as api:  # the client keeps its connection alive
        headers = api.admin
        with httpx.Client(base_url=api.base_url) as client:
            runs = [timed(client, {
                "open": ("/info/version", None), "auth": ("/api/v1/me", headers),
                "unknown": ("/api/v1/me", {**headers, "Authentication-Key": "lsk_" + "a" * 20}),
                "wrong": ("/api/v1/me", {**headers, "Authentication-Secret": "wrong"})}) for _ in range(RUNS)]
        statuses = {name: status for run in runs for name, (_, status) in run.items()}
        assert statuses == {"open": 200, "auth": 200, "unknown": 401, "wrong": 401}, statuses
        overheads = [run["auth"][0] - run["open"][0] for run in runs]
        open_t, auth_t, unknown_t, wrong_t = (statistics.median(run[name][0] for run in runs)
                                              for name in ("open", "auth", "unknown", "wrong"))

    try:
        import bcrypt

        hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(12))
        started = time.perf_counter()
        for _ in range(5):
            bcrypt.checkpw(b"secret", hashed)
        bcrypt_t = (time.perf_counter() - started) / 5
    except ImportError:
        bcrypt_t = None

    print(f"open endpoint          median {open_t * 1e3:7.3f} ms  (baseline)")
    print(f"authenticated endpoint median {auth_t * 1e3:7.3f} ms  ratio {auth_t / open_t:5.2f}x")
    overhead = statistics.median(overheads)
    print(f"authentication overhead       {overhead * 1e3:7.3f} ms per request (target < 0.5 ms; median of "
          f"{RUNS} runs: {', '.join(f'{o * 1e3:.3f}' for o in overheads)})")
    print(f"unknown key (401)      median {unknown_t * 1e3:7.3f} ms  wrong secret (401) median {wrong_t * 1e3:7.3f} ms"
          f"  ratio {unknown_t / wrong_t:5.2f}")
    if bcrypt_t is not None:
        print(f"LabelAPI's bcrypt(12) check   {bcrypt_t * 1e3:7.1f} ms per request "
              f"({bcrypt_t / max(overhead, 1e-6):.0f}x our overhead)")
    else:
        print("LabelAPI's bcrypt(12) check   not measured (pip install bcrypt to include it)")


if __name__ == "__main__":
    main()
