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


def test_no_sas_or_secret_is_stored_in_the_database(client, admin, make_image_set, app_context):
    from sqlalchemy import text

    from app.extensions import db

    created = make_image_set()
    client.post(f"/api/v1/image_sets/{created['imageset_id']}/dropbox_url", headers=admin)
    signature = created["dropbox_url"].split("sig=")[1].split("&")[0]
    tables = db.session.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars()
    dump = "".join(str(db.session.execute(text(f'SELECT * FROM "{t}"')).all()) for t in tables)
    assert "sig=" not in dump and signature not in dump and admin["Authentication-Secret"] not in dump


def test_sas_is_https_only_except_against_azurite():
    from datetime import timedelta
    from urllib.parse import parse_qs, urlsplit

    from app.embedded.azurite import ACCOUNT_KEY
    from app.storage import BlobStorage

    real = BlobStorage(connection_string=f"DefaultEndpointsProtocol=https;AccountName=prodacct;AccountKey={ACCOUNT_KEY};"
                                         "EndpointSuffix=core.windows.net", container="images")
    url = real.image_read_url("imagesets/a/b.jpg", timedelta(minutes=5)).url  # signing sends nothing
    assert url.startswith("https://prodacct.blob.core.windows.net/images/imagesets/a/b.jpg?")
    assert parse_qs(urlsplit(url).query)["spr"] == ["https"]
    assert parse_qs(urlsplit(real.upload_area_url("up", timedelta(days=7)).url).query)["spr"] == ["https"]
