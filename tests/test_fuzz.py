"""Schemathesis over every operation of the API, served as in production (uvicorn, its own process, the
protocol that caps headers): with an admin key and with a labeler key bound to a campaign (the open service
endpoints of info.yaml without a key), data that fits
the spec and data that does not. Checks: no server error, every status and body as the spec declares, data
outside the spec refused, and the API's memory bounded. About a minute; FUZZ_SECONDS=600 for a longer run.

Nothing is excluded: a failure is a bug to fix. EXCLUDED lists anything that ever must be, with its reason."""
from __future__ import annotations

import os
import sys
import threading
import time

import httpx
import psutil
import pytest

from app.embedded.ports import free_port, wait_for_port
from app.factory import load_spec
from tests.helpers import env_for, pair

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "60"))
MIN_EXAMPLES = 3  # every operation is tried at least this often per key and mode, whatever the budget
RSS_GROWTH_LIMIT = 100 * 1024 * 1024  # what the API process may grow by while fuzzed (it starts near 140 MB)
EXCLUDED: dict[str, str] = {}  # "METHOD /path" -> why it cannot be fuzzed


@pytest.fixture
def api_process(settings_overrides, processes, connexion_app):
    port = free_port()
    server = processes.start([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port), "--http",
                              "app.limits:HeadLimitedHttpTools", "--log-level", "warning", "--no-access-log"],
                             env=env_for({**settings_overrides, "log_level": "WARNING"}))
    wait_for_port("127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}"


class Peak(threading.Thread):
    """The process's largest resident set, sampled every 50 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.05)


def test_fuzz_every_operation(api_process, start_worker, admin, make_campaign, stored_images):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (content_type_conformance, negative_data_rejection, not_a_server_error,
                                     response_headers_conformance, response_schema_conformance,
                                     status_code_conformance)

    server, base = api_process
    start_worker()  # /info/status is 200 only with a live worker; jobs the fuzzer asks for run too
    campaign = make_campaign(stored_images[:3])
    labeler = pair(campaign["access_token"])
    ids = {"campaign_id": campaign["campaign_id"], "image_id": stored_images[0]}
    # Data outside the spec may also be refused as too large: a body over MAX_JSON_BODY_BYTES (or an array over
    # maxItems that is also over it) gets 413 before it is parsed. 413 is a refusal like 400 and 422.
    from schemathesis.config import SchemathesisConfig
    refusals = SchemathesisConfig().projects.default.checks.negative_data_rejection.expected_statuses
    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": [*refusals, "413"]}}})
    api = [result.ok() for result in schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json", config=config)
           .get_all_operations()]
    info = [result.ok() for result in schemathesis.openapi.from_dict(load_spec("info.yaml"), config=config)
            .get_all_operations()]
    operations = [op for op in api + info if f"{op.method.upper()} {op.path}" not in EXCLUDED]
    assert len(operations) == len(spec_operations()) - len(EXCLUDED)  # every operation the specs declare

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    api_runs = [(who, headers, mode) for who, headers in (("admin", admin), ("labeler", labeler)) for mode in modes]
    info_runs = [("anyone", {}, mode) for mode in modes]  # the service endpoints take no key
    runs = [(op, run) for op in operations for run in (api_runs if op in api else info_runs)]
    httpx.get(f"{base}/api/v1/me", headers=admin)  # warm
    peak = Peak(server.pid)
    baseline = peak.process.memory_info().rss
    peak.start()
    started, counts, failures = time.monotonic(), {}, []
    total = len(runs)
    for n, (operation, (who, headers, mode)) in enumerate(runs):
        left = max(0.0, FUZZ_SECONDS - (time.monotonic() - started))
        budget = left / (total - n)  # seconds for this operation, key and mode
        # Fitting data reaches real rows (the labeler's campaign and image); data that does not fit mutates
        # the ids too.
        pinned = {name: value for name, value in ids.items()
                  if name in operation.path and mode == GenerationMode.POSITIVE}
        # The key headers are given, not generated: a negative case must not count a mutated key that the
        # real one then replaced as "bad data accepted".
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned or None, headers=headers)
        mode_checks = checks + [negative_data_rejection] if mode == GenerationMode.NEGATIVE else checks
        deadline = time.monotonic() + budget
        label = f"{operation.method.upper()} {operation.path} as {who}, {mode.value}"
        ran = [0]

        @settings(max_examples=10_000, deadline=None, database=None, derandomize=False, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case):
            if ran[0] >= MIN_EXAMPLES and time.monotonic() > deadline:
                raise _OutOfTime
            ran[0] += 1
            answered.append((case, case.call(base_url=f"{base}/api/v1" if who != "anyone" else base, headers=headers,
                                             timeout=30)))

        answered = []
        try:
            fuzz()
        except _OutOfTime:
            pass
        except Unsatisfiable:  # nothing to get wrong: no parameter or body besides the key (GET /me)
            if mode == GenerationMode.POSITIVE or _has_inputs(operation):
                failures.append(f"{label}: no case could be generated")
        except Exception as error:  # schemathesis could not generate: reported, never silently passed
            failures.append(f"{label}: generation failed: {error!r}"[:1000])
        for case, response in answered:  # checked outside Hypothesis, so every failure is collected
            try:
                case.validate_response(response, checks=mode_checks, headers=headers)
            except (Exception, BaseExceptionGroup) as error:  # schemathesis' FailureGroup
                failures.append(f"{label}: {str(error)[:2000]}")
        counts[label] = ran[0]
    peak.stop.set()
    peak.join()
    elapsed = time.monotonic() - started
    print(f"fuzzed {sum(counts.values())} cases over {len(operations)} operations in {elapsed:.0f} s; "
          f"RSS {baseline / 2**20:.0f} MB -> peak {peak.peak / 2**20:.0f} MB; {len(failures)} failures")
    assert not failures, "\n\n".join(failures[:20])
    assert peak.peak - baseline < RSS_GROWTH_LIMIT
    assert server.poll() is None


def spec_operations() -> list[str]:
    return [f"{method.upper()} {path}" for name in ("api.yaml", "info.yaml")
            for path, item in load_spec(name)["paths"].items() for method in item if method != "parameters"]


def _has_inputs(operation) -> bool:
    definition = operation.definition.raw
    return "{" in operation.path or bool(definition.get("parameters") or definition.get("requestBody"))


class _OutOfTime(Exception):
    """This operation's share of FUZZ_SECONDS is spent."""
