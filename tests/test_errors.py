"""Every error is application/problem+json with type/title/status/detail and the same text in `error`."""
import json
import logging
import re
import uuid

import pytest
import yaml

from tests.helpers import ROOT, assert_problem


def test_unknown_route_is_404_problem(client):
    body = assert_problem(client.get("/api/v1/no-such-thing"), 404)
    assert "/api/v1" in body["detail"]


def test_unknown_root_route_is_404_problem(client):
    assert_problem(client.get("/nope"), 404)


def test_wrong_method_is_405_problem(client):
    assert_problem(client.delete("/info/version"), 405)


def spec_paths():
    for base, name in (("", "info.yaml"), ("/api/v1", "api.yaml")):
        spec = yaml.safe_load((ROOT / "app" / "openapi" / name).read_text())
        for template, item in spec["paths"].items():
            methods = {m.upper() for m in item if m in ("get", "put", "post", "delete", "patch")}
            yield base + re.sub(r"\{[^}]+\}", "1", template), methods | ({"HEAD"} if "GET" in methods else set())


@pytest.mark.parametrize("path, methods", list(spec_paths()))
def test_every_405_names_every_method_of_its_path(client, path, methods):
    # Starlette named only the first route's methods: OPTIONS /api/v1/keys said `GET, HEAD`, leaving out POST.
    for method in ["OPTIONS"] + [m for m in ("PATCH", "PUT", "DELETE") if m not in methods][:1]:
        response = client.request(method, path)
        assert_problem(response, 405)
        assert set(response.headers["Allow"].split(", ")) == methods


def test_swagger_ui_405_has_allow_too(client):
    response = client.options("/api/v1/ui/")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path, location", [("/api/v1/keys/?per_page=5", "/api/v1/keys?per_page=5"),
                                            ("/api/v1/ui", "/api/v1/ui/")])
def test_redirects_never_name_the_host_the_client_sent(client, path, location):
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 307 and response.headers["Location"] == location


def test_malformed_json_is_400_problem(client, admin):
    response = client.post("/api/v1/keys", content=b'{"roles": [', headers={**admin, "Content-Type": "application/json"})
    assert_problem(response, 400)


def test_bad_input_names_the_field_and_changes_nothing(client, admin):
    before = client.get("/api/v1/keys", headers=admin).json()["pagination"]["total"]
    body = assert_problem(client.post("/api/v1/keys", json={"roles": ["wizard"], "email": "x@example.org"},
                                      headers=admin), 400)
    assert "roles" in body["detail"]
    body = assert_problem(client.post("/api/v1/keys", json={"roles": ["reader"], "colour": "red"}, headers=admin), 400)
    assert "colour" in body["detail"]
    assert client.get("/api/v1/keys", headers=admin).json()["pagination"]["total"] == before


def test_bad_query_parameter_names_it(client, admin):
    body = assert_problem(client.get("/api/v1/keys?per_page=0", headers=admin), 400)
    assert "per_page" in body["detail"]


def test_unexpected_error_is_500_without_internals_and_logged_with_request_id(client, admin, monkeypatch, caplog):
    from app.services import keys

    def explode(**_):
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(keys, "list_keys", explode)
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/keys", headers={**admin, "X-Request-ID": "req-abc-123"})
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert response.headers["X-Request-ID"] == "req-abc-123"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert logged and logged[0].request_id == "req-abc-123"
    assert "X-Request-ID" in body["detail"]


def test_every_response_has_a_request_id(client):
    first = client.get("/info/version").headers["X-Request-ID"]
    second = client.get("/info/version").headers["X-Request-ID"]
    assert first and second and first != second


@pytest.mark.parametrize("incoming", ["ok-id_1.2", "x" * 200, "bad id\r\n"])
def test_incoming_request_id_is_kept_only_when_sane(client, incoming):
    returned = client.get("/info/version", headers={"X-Request-ID": incoming}).headers["X-Request-ID"]
    assert (returned == incoming) == (incoming == "ok-id_1.2")


def test_problem_schema_is_declared_in_the_spec(client):
    spec = client.get("/api/v1/openapi.json").json()
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "error"}
    assert json.dumps(spec).count("application/problem+json") > 5


def test_a_database_error_is_logged_with_its_statement_but_not_the_request_values(app_context):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from app import logs
    from app.extensions import db

    sent = f"label-{uuid.uuid4().hex}"  # made here, so a traceback's source lines cannot show it
    with pytest.raises(DBAPIError) as raised:
        db.session.execute(text("SELECT CAST(:label AS text), 1 / 0"), {"label": sent})
    db.session.rollback()
    error = raised.value
    record = logging.LogRecord("app.api.problems", logging.ERROR, __file__, 1, "unexpected error", (),
                               (type(error), error, error.__traceback__))
    record.request_id = "req-1"
    line = logs.TextFormatter().format(record)
    assert "division by zero" in line and "SELECT CAST(%(label)s AS text)" in line
    assert sent not in line
