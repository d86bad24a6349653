"""Keyless storage, as an operator on Azure runs it: an account URL, a token credential, SAS signed with user
delegation keys. Against Azurite in OAuth mode over HTTPS (a certificate made here with trustme) and a loopback
Entra ID stand-in handing out client-credential tokens. Azurite checks bearer tokens and the signature of every
user delegation SAS in this mode; it does not check a SAS's expiry against its key's (`se` <= `ske`), which Azure
enforces, so the tests assert it on every SAS."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trustme

from app.embedded.azurite import Azurite
from app.settings import load
from app.state import app_state
from app.storage import DELEGATION_KEY_LIFETIME, BlobStorage, StorageError
from tests import images
from tests.entra_standin import EntraStandIn

TENANT, CLIENT_ID, CLIENT_SECRET = "3f0e2c1a-9b7d-4e5f-8a6b-1c2d3e4f5a6b", "label-store-app", "client-secret-not-real"
KEY_REQUESTED = "got a user delegation key"


class ShiftedClock:
    """Real time moved by `offset`: time still flows as Azurite sees it, and a test can jump days."""

    def __init__(self, offset: timedelta = timedelta(0)):
        self.offset = offset

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, **delta) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """One test CA for Azurite's certificate and the Entra stand-in's; `ca_bundle` is its PEM."""
    where = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(where / "cert.pem"))
    cert.private_key_pem.write_to_path(str(where / "key.pem"))
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    return ca, where


@pytest.fixture(scope="module")
def ca_bundle(tls):
    return str(tls[1] / "ca.pem")


@pytest.fixture(scope="module")
def entra(tls):
    with EntraStandIn(tls[0], tenant=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def oauth_azurite(tls, tmp_path_factory):
    server = Azurite(tmp_path_factory.mktemp("azurite-oauth"), cert=tls[1] / "cert.pem", key=tls[1] / "key.pem").start()
    yield server
    server.stop()


@pytest.fixture
def credential(entra, ca_bundle):
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(TENANT, CLIENT_ID, CLIENT_SECRET, authority=entra.base_url,
                                  disable_instance_discovery=True, connection_verify=ca_bundle)


@pytest.fixture
def clock():
    return ShiftedClock()


@pytest.fixture
def keyless(oauth_azurite, credential, clock, ca_bundle):
    """keyless(container) -> a BlobStorage on the OAuth Azurite with the test's credential and clock."""

    def make(container: str = "images") -> BlobStorage:
        storage = BlobStorage(account_url=oauth_azurite.account_url, container=container, credential=credential,
                              clock=clock, connection_verify=ca_bundle)
        storage.ensure_container()
        return storage

    return make


@pytest.fixture
def key_requests(caplog):
    """How many user delegation keys storage has asked for so far (it logs each request once)."""
    caplog.set_level(logging.INFO, logger="app.storage")
    return lambda: sum(record.getMessage() == KEY_REQUESTED for record in caplog.records)


def sas(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def sas_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def assert_within_key(signed) -> dict:
    """A user delegation SAS that its key covers whole, whose `expires_at` is its real `se`."""
    query = sas(signed.url)
    assert {"skoid", "sktid", "skt", "ske", "sig"} <= query.keys(), "not signed with a user delegation key"
    assert sas_time(query["se"]) <= sas_time(query["ske"]), f"SAS outlives its key: se={query['se']} ske={query['ske']}"
    assert signed.expires_at == sas_time(query["se"])
    return query


def put(ca_bundle: str, container_url: str, name: str, data: bytes) -> httpx.Response:
    base, _, query = container_url.partition("?")
    return httpx.put(f"{base}/{name}?{query}", content=data, headers={"x-ms-blob-type": "BlockBlob"}, verify=ca_bundle)


# --- the key's lifetime ------------------------------------------------------------------------------

def test_a_dropbox_made_after_days_of_uptime_still_lives_as_long_as_promised(keyless, clock, key_requests, ca_bundle):
    # The service started 6 days 22 hours "ago": its first key, asked for then, has under 2 hours left now.
    clock.advance(days=-6, hours=-22)
    storage = keyless()
    storage.create_upload_area("aged-up")
    early = storage.upload_area_url("aged-up", timedelta(days=7))
    assert_within_key(early)
    assert put(ca_bundle, early.url, "early.jpg", images.jpeg(seed=1)).status_code == 201
    assert key_requests() == 1

    clock.advance(days=6, hours=22)  # now
    assert assert_within_key(storage.image_read_url("x.jpg", timedelta(minutes=60)))["ske"] == sas(early.url)["ske"]
    assert key_requests() == 1  # the aged key still covers an hour's read URL whole

    dropbox = storage.upload_area_url("aged-up", timedelta(days=7))
    query = assert_within_key(dropbox)
    assert key_requests() == 2  # but not a week's dropbox: a fresh key signs it
    lifetime = dropbox.expires_at - clock()
    assert DELEGATION_KEY_LIFETIME - timedelta(minutes=6) < lifetime <= DELEGATION_KEY_LIFETIME  # minutes under 7 d
    # Azure grants keys up to 7 days after its own clock: ours ask for less, so a clock minutes fast still gets one.
    assert sas_time(query["ske"]) <= datetime.now(timezone.utc) + timedelta(days=7, minutes=-5)
    assert put(ca_bundle, dropbox.url, "late.jpg", images.jpeg(seed=2)).status_code == 201
    assert [b.name for b in storage.list_upload_area("aged-up")] == ["early.jpg", "late.jpg"]


def test_a_read_url_longer_than_any_key_is_cut_to_its_key(keyless, key_requests, ca_bundle):
    storage = keyless()
    storage.upload_bytes("long/read.jpg", b"bytes")
    signed = storage.image_read_url("long/read.jpg", timedelta(days=7, hours=1))
    assert_within_key(signed)
    assert signed.expires_at - datetime.now(timezone.utc) < timedelta(days=7)
    assert httpx.get(signed.url, verify=ca_bundle).content == b"bytes"


def test_concurrent_dropboxes_share_one_key(keyless, key_requests):
    storage = keyless()
    with ThreadPoolExecutor(50) as pool:
        urls = list(pool.map(lambda i: storage.upload_area_url(f"area-{i}", timedelta(days=7)), range(50)))
    assert key_requests() == 1
    assert len({sas(u.url)["ske"] for u in urls}) == 1
    for url in urls:
        assert_within_key(url)


def test_a_dropbox_an_hour_later_asks_for_a_fresh_key_but_not_one_each_minute(keyless, clock, key_requests):
    storage = keyless()
    first = storage.upload_area_url("area", timedelta(days=7))
    clock.advance(minutes=4)
    assert storage.upload_area_url("area", timedelta(days=7)).expires_at == first.expires_at  # same key, a bit shorter
    assert key_requests() == 1
    clock.advance(hours=1)
    later = storage.upload_area_url("area", timedelta(days=7))
    assert key_requests() == 2 and later.expires_at - first.expires_at >= timedelta(hours=1)
    assert_within_key(later)


def test_a_signature_azurite_would_not_accept_is_refused(keyless, ca_bundle):
    """The tests above mean something only if Azurite checks user delegation signatures: it does."""
    storage = keyless()
    storage.create_upload_area("forged-up")
    dropbox = storage.upload_area_url("forged-up", timedelta(hours=1))
    forged = dropbox.url.replace(f"se={sas(dropbox.url)['se'][:4]}", f"se={int(sas(dropbox.url)['se'][:4]) + 1}")
    assert put(ca_bundle, forged, "a.jpg", b"x").status_code == 403  # a year more, same signature
    assert put(ca_bundle, dropbox.url, "a.jpg", b"x").status_code == 201


def test_a_dropbox_gives_up_at_its_timeout_when_storage_hangs(silent_server, credential, ca_bundle):
    """Keyless, a dropbox URL costs a request (the user delegation key): it must not hang an API call."""
    storage = BlobStorage(account_url=f"https://127.0.0.1:{silent_server}/devstoreaccount1", container="hung",
                          credential=credential, connection_verify=ca_bundle, timeout=2, retries=0)
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot get a user delegation key"):
        storage.upload_area_url("up", timedelta(days=7))
    assert time.monotonic() - started < 5


# --- the service, keyless end to end ------------------------------------------------------------------

@pytest.fixture
def keyless_app(settings_overrides, connexion_app, oauth_azurite, credential, clock, ca_bundle):
    """The app on the test database with AZURE_STORAGE_ACCOUNT_URL set (no connection string), handed the
    test's credential, clock and CA bundle."""
    from app.factory import create_app

    settings = load(**{**settings_overrides, "azure_storage_connection_string": None,
                       "azure_storage_account_url": oauth_azurite.account_url})
    connexion_app = create_app(settings, validate_responses=True,
                    storage_options={"credential": credential, "clock": clock, "connection_verify": ca_bundle})
    app_state(connexion_app.app).storage.ensure_container()
    return connexion_app


def test_image_set_lifecycle_without_account_keys(keyless_app, admin, entra, ca_bundle):
    from app.services.finishing import finish

    client = keyless_app.test_client()
    created = client.post("/api/v1/image_sets", json={"title": "keyless beach"}, headers=admin)
    assert created.status_code == 201, created.text
    image_set = created.json()
    dropbox = image_set["dropbox_url"]
    assert datetime.fromisoformat(image_set["dropbox_url_expires_at"]) == sas_time(sas(dropbox)["se"])
    assert sas_time(sas(dropbox)["se"]) <= sas_time(sas(dropbox)["ske"])
    files = {"a.jpg": images.jpeg(seed=10), "b.png": images.png(seed=11), "copy-of-a.jpg": images.jpeg(seed=10)}
    for name, data in files.items():
        assert put(ca_bundle, dropbox, name, data).status_code == 201

    imageset_id = image_set["imageset_id"]
    moved = client.put(f"/api/v1/image_sets/{imageset_id}", json={"new_status": "finished"}, headers=admin)
    assert moved.status_code == 202, moved.text
    with keyless_app.app.app_context():
        finish(imageset_id)  # what the worker's job runs, here on the keyless storage
    done = client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()
    assert done["status"] == "finished", done["error"]
    assert done["progress"] == {"total": 3, "done": 3, "accepted": 2, "duplicates": 1, "rejected": 0, "failed": 0}

    listed = client.get(f"/api/v1/images?imageset_id={imageset_id}", headers=admin).json()["images"]
    assert len(listed) == 2
    for image in listed:
        signed = client.get(f"/api/v1/images/{image['image_id']}/url", headers=admin).json()
        query = sas(signed["url"])
        assert datetime.fromisoformat(signed["expires_at"]) == sas_time(query["se"]) <= sas_time(query["ske"])
        name = image["blobstorage_path"].rsplit("/", 1)[-1]
        assert httpx.get(signed["url"], verify=ca_bundle).content == files[name]

    check = client.get("/info/status").json()["checks"]["blob_storage"]
    assert check["ok"] and check["message"].startswith("reachable, container"), check

    tokens = [t for t in entra.tokens if t["status"] == 200]
    assert tokens and all(t["grant_type"] == "client_credentials" and t["client_id"] == CLIENT_ID
                          and t["scope"] == "https://storage.azure.com/.default" for t in tokens)


def test_a_wrong_client_secret_makes_status_red_without_leaking_it(settings_overrides, connexion_app, oauth_azurite, entra,
                                                                    ca_bundle):
    from azure.identity import ClientSecretCredential

    from app.factory import create_app

    wrong = ClientSecretCredential(TENANT, CLIENT_ID, "not-the-secret", authority=entra.base_url,
                                   disable_instance_discovery=True, connection_verify=ca_bundle)
    settings = load(**{**settings_overrides, "azure_storage_connection_string": None,
                       "azure_storage_account_url": oauth_azurite.account_url})
    client = create_app(settings, storage_options={"credential": wrong, "connection_verify": ca_bundle}).test_client()
    response = client.get("/info/status")
    assert response.status_code == 503
    assert not response.json()["checks"]["blob_storage"]["ok"]
    assert "not-the-secret" not in response.text
    assert entra.tokens[-1]["status"] == 401



def test_azure_ml_uses_the_credential_it_is_given(settings_overrides):
    """Azure ML's credential can be injected too: here another principal than the AZURE_ML_SP_* settings name."""
    from azure.identity import ClientSecretCredential

    from app.azureml import probe
    from app.factory import create_app
    from tests.azureml_standin import StandIn

    with StandIn() as aml:
        settings = load(**{**settings_overrides, "azure_ml_subscription_id": "sub", "azure_ml_resource_group": "rg",
                           "azure_ml_workspace_name": "ws", "azure_ml_sp_tenant_id": "tenant-1",
                           "azure_ml_sp_application_id": "configured-app", "azure_ml_sp_password": "configured-secret",
                           "azure_ml_resource_manager_url": aml.base_url, "azure_ml_authority_host": aml.base_url,
                           "azure_ml_ca_bundle": aml.ca_bundle})
        injected = ClientSecretCredential("tenant-2", "injected-app", "injected-secret", authority=aml.base_url,
                                          disable_instance_discovery=True, connection_verify=aml.ca_bundle)
        assert probe(settings, credential=injected) == "reachable, workspace 'ws'"
        # The app hands it on too: its status probe (and the dataset build) use the credential it was given.
        status = create_app(settings, azureml_credential=injected).test_client().get("/info/status").json()
        assert status["checks"]["azure_ml"] == {"ok": True, "message": "reachable, workspace 'ws'", "required": True}
    token_requests = [r for r in aml.requests if r["path"].endswith("/oauth2/v2.0/token")]
    assert {r["path"] for r in token_requests} == {"/tenant-2/oauth2/v2.0/token"}
    assert parse_qs(token_requests[0]["body"])["client_id"] == ["injected-app"]


@pytest.mark.parametrize("url", ["http://acct.blob.core.windows.net", "acct.blob.core.windows.net",
                                 "https://acct.blob.core.windows.net/?sv=2024&sig=x"])
def test_an_account_url_that_would_send_tokens_in_clear_or_carries_a_sas_is_refused_at_start(url):
    from app.settings import SettingsError

    with pytest.raises(SettingsError) as raised:
        load(_env_file=None, azure_storage_account_url=url)
    assert raised.value.variable == "AZURE_STORAGE_ACCOUNT_URL" and "https://" in raised.value.problem
