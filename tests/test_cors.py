"""CORS: browsers on the origins in CORS_ALLOW_ORIGINS may call the API with the key headers; any other
origin gets no CORS header at all. The test app allows https://labeler.example.org (tests/conftest.py)."""
import pytest

LISTED = "https://labeler.example.org"


def preflight(client, origin: str, method: str = "GET", headers: str = "authentication-key,authentication-secret"):
    return client.options("/api/v1/image_sets", headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})


def cors_headers(response) -> dict:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_preflight_from_a_listed_origin_allows_the_methods_and_key_headers(client, method):
    response = preflight(client, LISTED, method, "authentication-key,authentication-secret,content-type")
    assert response.status_code in (200, 204)
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == LISTED
    assert method in [m.strip() for m in headers["access-control-allow-methods"].split(",")]
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert {"authentication-key", "authentication-secret", "content-type"} <= allowed
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize("origin", ["https://evil.example.com", "https://labeler.example.org.evil.com",
                                    "http://labeler.example.org", "null"])
def test_preflight_from_another_origin_gets_no_cors_headers(client, origin):
    response = preflight(client, origin)
    assert cors_headers(response) == {}
    assert response.status_code >= 400  # the API's own answer to OPTIONS: not allowed


def test_requests_from_a_listed_origin_may_read_the_answer(client, admin):
    response = client.get("/api/v1/me", headers={**admin, "Origin": LISTED})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == LISTED
    assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()
    # errors too, so a page can show them
    failed = client.get("/api/v1/me", headers={"Origin": LISTED})
    assert failed.status_code == 401 and failed.headers["Access-Control-Allow-Origin"] == LISTED


def test_requests_from_another_origin_get_no_cors_headers(client, admin):
    response = client.get("/api/v1/me", headers={**admin, "Origin": "https://evil.example.com"})
    assert response.status_code == 200
    assert cors_headers(response) == {}


def test_no_origins_is_the_default(monkeypatch):
    from app.settings import load

    monkeypatch.delenv("CORS_ALLOW_ORIGINS", raising=False)
    assert load(db_connection_string=None, api_key_pepper=None).cors_origins == []


@pytest.mark.parametrize("value", ["*", "https://a.example.org/path", "a.example.org"])
def test_malformed_origins_are_refused_naming_the_setting(value):
    from app.settings import SettingsError, load

    with pytest.raises(SettingsError) as refused:
        load(cors_allow_origins=value)
    assert refused.value.variable == "CORS_ALLOW_ORIGINS"
