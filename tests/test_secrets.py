"""Secrets, even wrong ones, never reach logs or error bodies."""
import logging

from app.logs import redact


def test_secrets_never_logged_or_echoed(client, admin, caplog):
    wrong = "WrongSecret-DoNotLog-123456"
    with caplog.at_level(logging.DEBUG):
        created = client.post("/api/v1/keys", json={"roles": ["reader"], "email": "p@example.org"}, headers=admin).json()
        new_secret = created["apisecret"]
        responses = [
            client.get("/api/v1/me", headers={**admin, "Authentication-Secret": wrong}),
            client.get("/api/v1/me", headers={"Authentication-Key": created["key_id"], "Authentication-Secret": wrong}),
            client.get("/api/v1/keys?per_page=-1", headers=admin),
            client.get("/api/v1/me", headers={"Authentication-Key": wrong, "Authentication-Secret": wrong}),
        ]
        rotated = client.post(f"/api/v1/keys/{created['key_id']}/rotate", headers=admin).json()["apisecret"]
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (wrong, new_secret, rotated, admin["Authentication-Secret"]):
        assert secret not in logged
    for response in responses:
        assert response.status_code in (400, 401)
        assert wrong not in response.text and admin["Authentication-Secret"] not in response.text


def test_log_lines_mask_sas_signatures_and_account_keys():
    line = ("GET https://acct.blob.core.windows.net/c/b.jpg?sv=2024-08-04&se=2026&sp=r&sig=abc%2Bdef%3D "
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0a2V5==;EndpointSuffix=x")
    masked = redact(line)
    assert "abc%2Bdef" not in masked and "c2VjcmV0a2V5" not in masked
    assert "sig=REDACTED" in masked and "AccountKey=REDACTED" in masked and "sp=r" in masked
