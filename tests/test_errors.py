"""Every error is application/problem+json with type/title/status/detail and the same text in `error`."""
import json
import logging

import pytest

from tests.helpers import assert_problem


def test_unknown_route_is_404_problem(client):
    body = assert_problem(client.get("/api/v1/no-such-thing"), 404)
    assert "/api/v1" in body["detail"]


def test_unknown_root_route_is_404_problem(client):
    assert_problem(client.get("/nope"), 404)


def test_wrong_method_is_405_problem(client):
    assert_problem(client.delete("/info/version"), 405)


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
