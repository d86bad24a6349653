"""Storage's network limits hold: against a listener that accepts and never answers, a client configured for
2 s and no retries gives up in about 2 s, not after the SDK transport's default of 300 s."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from app.embedded.azurite import connection_string
from app.storage import BlobStorage


def raises_within(seconds: float, call) -> str:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:  # noqa: BLE001  (which error is the SDK's business; that it comes in time is ours)
        elapsed = time.monotonic() - started
        assert elapsed < seconds, f"gave up after {elapsed:.1f}s"
        return type(exc).__name__
    raise AssertionError("no error from a listener that never answers")


def test_every_call_gives_up_at_its_timeout_when_storage_hangs(silent_server):
    storage = BlobStorage(connection_string=connection_string("127.0.0.1", silent_server), container="hung",
                          timeout=2, retries=0)
    calls = {"probe": storage.probe, "read": lambda: storage.read_image_through("a.jpg", head_limit=65536, tail_size=64),
             "list": lambda: list(storage.list_upload_area("up")),
             "create_upload_area": lambda: storage.create_upload_area("up")}
    with ThreadPoolExecutor(len(calls)) as pool:  # at once: the test takes one timeout, not four
        errors = dict(zip(calls, pool.map(lambda call: raises_within(5, call), calls.values())))
    assert errors["probe"] == errors["create_upload_area"] == "StorageError", errors
