"""Every operation in the spec against every role and every kind of bad credentials.

RULES is written out here on purpose, not read from the spec's x-roles: a change of who may call what
must be made twice, and an operation without a rule here fails the first test.
"""
import pytest
import yaml

from tests.conftest import ROOT

ALL = {"admin", "image-admin", "labeler", "uploader", "reader"}
RULES = {
    "app.api.keys.me": ALL,
    "app.api.keys.list_keys": {"admin"},
    "app.api.keys.create_key": {"admin"},
    "app.api.keys.get_key": {"admin"},
    "app.api.keys.revoke_key": {"admin"},
    "app.api.keys.rotate_key": {"admin"},
}
# A valid body for each operation that takes one, so allowed calls get past validation.
BODIES = {
    "app.api.keys.create_key": {"roles": ["reader"], "email": "someone@example.org"},
}


def operations():
    spec = yaml.safe_load((ROOT / "app" / "openapi" / "api.yaml").read_text())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                yield method, path, operation


OPERATIONS = list(operations())


def test_every_operation_has_a_rule_and_the_spec_agrees():
    assert {op["operationId"] for _, _, op in OPERATIONS} == set(RULES)
    for _, _, op in OPERATIONS:
        assert set(op.get("x-roles", [])) == RULES[op["operationId"]], op["operationId"]


@pytest.fixture
def target(make_key):
    """Path parameters naming things that exist."""
    return {"key_id": make_key("reader")["Authentication-Key"]}


def call(client, method, path, operation, headers, target):
    url = "/api/v1" + path.format(**target)
    body = BODIES.get(operation["operationId"])
    return client.request(method.upper(), url, headers=headers, json=body)


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("method, path, operation", OPERATIONS, ids=[op["operationId"] for _, _, op in OPERATIONS])
def test_role_table(client, make_key, target, role, method, path, operation):
    response = call(client, method, path, operation, make_key(role), target)
    if role in RULES[operation["operationId"]]:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        assert role in response.json()["detail"]


@pytest.fixture
def bad_credentials(make_key, client, admin, app_context):
    from sqlalchemy import text

    from app.extensions import db

    revoked, expired = make_key("admin"), make_key("admin")
    client.delete(f"/api/v1/keys/{revoked['Authentication-Key']}", headers=admin)
    db.session.execute(text("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE key_id = :k"),
                       {"k": expired["Authentication-Key"]})
    db.session.commit()
    return {
        "no key": {},
        "key without secret": {"Authentication-Key": admin["Authentication-Key"]},
        "wrong secret": {**admin, "Authentication-Secret": "wrong"},
        "unknown key": {**admin, "Authentication-Key": "lsk_zzzzzzzzzzzzzzzzzzzz"},
        "revoked": revoked,
        "expired": expired,
    }


@pytest.mark.parametrize("method, path, operation", OPERATIONS, ids=[op["operationId"] for _, _, op in OPERATIONS])
def test_bad_credentials_are_401(client, bad_credentials, target, method, path, operation):
    for name, headers in bad_credentials.items():
        response = call(client, method, path, operation, headers, target)
        assert response.status_code == 401, f"{name}: {response.text}"
        assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", ["/info/status", "/info/version", "/metrics", "/api/v1/openapi.json", "/api/v1/ui/"])
def test_open_paths_need_no_key(client, path):
    assert client.get(path).status_code in (200, 503)
