"""The Label Store API client: one method per operation of app/openapi/api.yaml (each marked with its
operationId by @operation; tests/test_client_drift.py holds the two to each other), typed results, iterators
that page, one error type, retries with backoff."""
from __future__ import annotations

import base64
import email.utils
import random
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

from labelstore_client import models as m
from labelstore_client.config import resolve
from labelstore_client.errors import LabelStoreError

T = TypeVar("T")
_UNSET: Any = object()  # "leave this member out": None means "set it to null"
# Requests that may be sent again after an answer was lost: the same request twice has the effect of one.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Failures before any byte of the request reached the service: every method may be sent again.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
RETRY_STATUSES = frozenset({429, 503})  # the service changed nothing: retry every method (after Retry-After)


def operation(operation_id: str) -> Callable[[T], T]:
    """Marks a method as the client's side of the spec's operation `operation_id`."""

    def mark(method):
        method.operation_id = operation_id
        return method

    return mark


def _drop_unset(**members) -> dict:
    return {k: v for k, v in members.items() if v is not _UNSET}


def _params(**values) -> dict:
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in values.items() if v is not None}


def _refs(refs: Iterable[int | str]) -> list[dict]:
    """Images by id (int) or by filepath (str), as ImageRefs."""
    return [{"id": r} if isinstance(r, int) else {"filepath": str(r)} for r in refs]


def _isoformat(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


class Client:
    """Client(url, key, secret): each falls back to LABELSTORE_URL / _KEY / _SECRET, then the config profile.

    `url` is the service's root (https://labelstore.example.org); a trailing /api/v1 is accepted too.
    Retries (max_retries, exponential backoff from `backoff` seconds, honouring Retry-After): 429 and 503 for
    every method (the service changed nothing); a connection that could not be made for every method; a
    connection lost after the request was sent only for GET, PUT, DELETE (POST and PATCH are not resent then).
    """

    def __init__(self, url: str | None = None, key: str | None = None, secret: str | None = None, *,
                 profile: str | None = None, timeout: float = 60.0, max_retries: int = 5, backoff: float = 0.5,
                 transport: httpx.BaseTransport | None = None):
        credentials = resolve(url, key, secret, profile)
        self.url = credentials.url.removesuffix("/api/v1")
        self.key = credentials.key
        self.max_retries, self.backoff = max_retries, backoff
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1", timeout=timeout, transport=transport, follow_redirects=False,
            headers={"Authentication-Key": credentials.key, "Authentication-Secret": credentials.secret,
                     "User-Agent": "labelstore-client/0.1"})

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, key={self.key!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def operations(cls) -> dict[str, str]:
        """operationId -> the name of the method that calls it."""
        return {method.operation_id: name for name, method in vars(cls).items() if hasattr(method, "operation_id")}

    # --- transport --------------------------------------------------------------------------------------

    def _delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        if response is not None and (after := response.headers.get("retry-after")):
            try:
                return min(float(after), 60.0)
            except ValueError:
                when = email.utils.parsedate_to_datetime(after)
                return max(0.0, min((when - datetime.now(timezone.utc)).total_seconds(), 60.0))
        return min(self.backoff * 2 ** attempt, 30.0) * (0.5 + random.random() / 2)

    def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), stream: bool = False,
                **options) -> httpx.Response:
        """Sends one API call (path under /api/v1), retrying as the class says; answers with a status in
        `expect`, else raises LabelStoreError. With stream=True the caller closes the response."""
        attempt = 0
        while True:
            try:
                response = self._http.send(self._http.build_request(method, path, **options), stream=stream)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries or not (isinstance(exc, NOT_SENT) or method in IDEMPOTENT):
                    raise LabelStoreError(None, "connection failed",
                                          f"{method} {self.url}/api/v1{path}: {type(exc).__name__}: {exc}") from None
                delay = self._delay(attempt)
            else:
                if response.status_code in expect:
                    return response
                if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                    raise self._error(response)
                delay = self._delay(attempt, response)
                response.close()
            time.sleep(delay)
            attempt += 1

    @staticmethod
    def _error(response: httpx.Response) -> LabelStoreError:
        response.read()
        request_id = response.headers.get("x-request-id")
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            body = {}
        title = body.get("title") or response.reason_phrase or "error"
        detail = body.get("detail") or body.get("error") or ""
        return LabelStoreError(response.status_code, str(title), str(detail), request_id, body.get("type"), body)

    def _json(self, method: str, path: str, *, expect=(200,), **options) -> Any:
        return self.request(method, path, expect=expect, **options).json()

    def _location(self, path: str) -> str:
        return self.request("GET", path, expect=(303,)).headers["location"]

    def _pages(self, path: str, member: str, model: type[m.M], per_page: int, **params) -> Iterator[m.M]:
        """Every item of an offset-paged listing, fetching page after page as the caller iterates."""
        page = 1
        while True:
            body = self._json("GET", path, params=_params(**params, page=page, per_page=per_page))
            yield from (model.from_dict(item) for item in body[member])
            page = body["pagination"]["next"]
            if not page:
                return

    def _cursor(self, path: str, member: str, model: type[m.M], per_page: int, **params) -> Iterator[m.M]:
        """Every item of a cursor-paged listing: each page costs what the first costs."""
        cursor = ""
        while True:
            body = self._json("GET", path, params=_params(**params, cursor=cursor, per_page=per_page))
            yield from (model.from_dict(item) for item in body[member])
            cursor = body["next_cursor"]
            if not cursor:
                return

    # --- me and keys ------------------------------------------------------------------------------------

    @operation("app.api.keys.me")
    def me(self) -> m.Me:
        return m.Me.from_dict(self._json("GET", "/me"))

    @operation("app.api.keys.list_keys")
    def list_keys(self, include_revoked: bool = False, per_page: int = 100) -> Iterator[m.ApiKey]:
        return self._pages("/keys", "keys", m.ApiKey, per_page, include_revoked=include_revoked)

    @operation("app.api.keys.create_key")
    def create_key(self, roles: list[str], *, email: str | None = None, device: str | None = None,
                   expires_at: datetime | str | None = None, description: str | None = None,
                   campaign_ids: list[int] | None = None, imageset_ids: list[int] | None = None) -> m.ApiKeyWithSecret:
        body = {k: v for k, v in {"roles": roles, "email": email, "device": device,
                                  "expires_at": _isoformat(expires_at), "description": description,
                                  "campaign_ids": campaign_ids, "imageset_ids": imageset_ids}.items() if v is not None}
        return m.ApiKeyWithSecret.from_dict(self._json("POST", "/keys", json=body, expect=(201,)))

    @operation("app.api.keys.get_key")
    def get_key(self, key_id: str) -> m.ApiKey:
        return m.ApiKey.from_dict(self._json("GET", f"/keys/{key_id}"))

    @operation("app.api.keys.revoke_key")
    def revoke_key(self, key_id: str) -> m.ApiKey:
        return m.ApiKey.from_dict(self._json("DELETE", f"/keys/{key_id}"))

    @operation("app.api.keys.rotate_key")
    def rotate_key(self, key_id: str, grace_seconds: int = 0) -> m.ApiKeyWithSecret:
        return m.ApiKeyWithSecret.from_dict(self._json("POST", f"/keys/{key_id}/rotate",
                                                       params={"grace_seconds": grace_seconds}))

    @operation("app.api.keys.erase")
    def erase_key_owner(self, key_id: str) -> m.ApiKey:
        return m.ApiKey.from_dict(self._json("POST", f"/keys/{key_id}/erase"))

    @operation("app.api.audit.list_entries")
    def list_audit_entries(self, *, entity: str | None = None, entity_id: str | None = None,
                           key_id: str | None = None, per_page: int = 100) -> Iterator[m.AuditEntry]:
        return self._cursor("/audit", "entries", m.AuditEntry, per_page, entity=entity, entity_id=entity_id,
                            key_id=key_id)

    # --- webhooks --------------------------------------------------------------------------------------

    @operation("app.api.webhooks.list_webhooks")
    def list_webhooks(self, per_page: int = 100) -> Iterator[m.Webhook]:
        return self._pages("/webhooks", "webhooks", m.Webhook, per_page)

    @operation("app.api.webhooks.register")
    def register_webhook(self, url: str, events: Iterable[str], secret: str | None = None) -> m.Webhook:
        """Registers an endpoint; the answer's `secret` (generated when not given) is shown only now."""
        body = {"url": url, "events": list(events), **({"secret": secret} if secret else {})}
        return m.Webhook.from_dict(self._json("POST", "/webhooks", json=body, expect=(201,)))

    @operation("app.api.webhooks.get_webhook")
    def get_webhook(self, webhook_id: int) -> m.Webhook:
        return m.Webhook.from_dict(self._json("GET", f"/webhooks/{webhook_id}"))

    @operation("app.api.webhooks.delete_webhook")
    def delete_webhook(self, webhook_id: int) -> None:
        self.request("DELETE", f"/webhooks/{webhook_id}", expect=(200,))

    @operation("app.api.webhooks.list_deliveries")
    def list_deliveries(self, webhook_id: int, *, status: str | None = None,
                        per_page: int = 100) -> Iterator[m.WebhookDelivery]:
        return self._cursor(f"/webhooks/{webhook_id}/deliveries", "deliveries", m.WebhookDelivery, per_page,
                            status=status)

    @operation("app.api.webhooks.redeliver")
    def redeliver(self, webhook_id: int, delivery_id: int) -> m.WebhookDelivery:
        return m.WebhookDelivery.from_dict(self._json(
            "POST", f"/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", expect=(202,)))

    # --- image sets ------------------------------------------------------------------------------------

    @operation("app.api.image_sets.list_sets")
    def list_image_sets(self, per_page: int = 100, *, status: str | None = None) -> Iterator[m.ImageSet]:
        """Every image set, or those in `status` (created, finishing, finished, failed, deleting)."""
        return self._pages("/image_sets", "image_sets", m.ImageSet, per_page, status=status)

    @operation("app.api.image_sets.create")
    def create_image_set(self, title: str, *, metadata: dict | None = None,
                         validation: dict | None = None) -> m.ImageSetWithDropbox:
        body = {"title": title, "metadata": metadata, **({"validation": validation} if validation else {})}
        return m.ImageSetWithDropbox.from_dict(self._json("POST", "/image_sets", json=body, expect=(201,)))

    @operation("app.api.image_sets.get")
    def get_image_set(self, imageset_id: int) -> m.ImageSet:
        return m.ImageSet.from_dict(self._json("GET", f"/image_sets/{imageset_id}"))

    @operation("app.api.image_sets.delete")
    def delete_image_set(self, imageset_id: int, *, force: bool = False) -> m.ImageSet:
        """Marks the set `deleting`; a job removes its own images, their blobs and its rows. 409 names what holds
        its images (campaigns, dataset versions); `force` (admins) retires those instead."""
        return m.ImageSet.from_dict(self._json("DELETE", f"/image_sets/{imageset_id}", params={"force": force} if force
                                               else None, expect=(202,)))

    @operation("app.api.image_sets.change_status")
    def finish_image_set(self, imageset_id: int) -> m.ImageSet:
        """Starts finishing (from created, or again from failed); follow it with get_image_set or wait_for_set."""
        return m.ImageSet.from_dict(self._json("PUT", f"/image_sets/{imageset_id}", json={"new_status": "finished"},
                                               expect=(202,)))

    @operation("app.api.image_sets.update")
    def update_image_set(self, imageset_id: int, *, title: str = _UNSET, metadata: dict | None = _UNSET) -> m.ImageSet:
        return m.ImageSet.from_dict(self._json("PATCH", f"/image_sets/{imageset_id}",
                                               json=_drop_unset(title=title, metadata=metadata)))

    @operation("app.api.image_sets.new_dropbox_url")
    def new_dropbox_url(self, imageset_id: int) -> m.ImageSetWithDropbox:
        return m.ImageSetWithDropbox.from_dict(self._json("POST", f"/image_sets/{imageset_id}/dropbox_url"))

    @operation("app.api.image_sets.list_images")
    def list_image_set_images(self, imageset_id: int, per_page: int = 100) -> Iterator[m.Image]:
        return self._pages(f"/image_sets/{imageset_id}/images", "images", m.Image, per_page)

    @operation("app.api.image_sets.add_images")
    def add_images_to_set(self, imageset_id: int, images: Iterable[int | str]) -> int:
        """Adds catalogued images by id (int) or filepath (str); answers how many were new to the set."""
        return self._json("POST", f"/image_sets/{imageset_id}/images", json=_refs(images))["added"]

    @operation("app.api.image_sets.report")
    def image_set_report(self, imageset_id: int, outcome: str | None = None,
                         per_page: int = 1000) -> Iterator[m.FileReport]:
        return self._pages(f"/image_sets/{imageset_id}/report", "files", m.FileReport, per_page, outcome=outcome)

    def wait_for_set(self, imageset_id: int, *, timeout: float | None = None,
                     progress: Callable[[m.ImageSet], None] | None = None, interval: float = 0.5) -> m.ImageSet:
        """Polls the set until it is finished or failed (timeout in seconds: LabelStoreError when it passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get_image_set(imageset_id)
            if progress:
                progress(current)
            if current.status not in ("finishing",):
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise LabelStoreError(None, "timed out", f"image set {imageset_id} still finishing after {timeout} s")
            time.sleep(interval)
            interval = min(interval * 1.5, 5.0)

    def upload_directory(self, path: str | Path, image_set: int | m.ImageSet | None = None, *, title: str | None = None,
                         finish: bool = True, wait: bool = True, progress=None, concurrency: int = 16,
                         **options):
        """Uploads every image file under `path` into a set's dropbox, resumably; then finishes and waits.
        See labelstore_client.upload.upload_directory."""
        from labelstore_client.upload import upload_directory

        return upload_directory(self, path, image_set=image_set, title=title, finish=finish, wait=wait,
                                progress=progress, concurrency=concurrency, **options)

    # --- ingest ----------------------------------------------------------------------------------------

    @operation("app.api.uploads.upload")
    def upload_files(self, imageset_id: int, files: Iterable[str | Path | tuple[str, bytes] | dict]) -> list[m.UploadResult]:
        """Uploads files straight into a created set. Items: a path, (name, bytes), or a dict with name and
        content (bytes) and optionally metadata, campaign_id and objects (then sent as JSON, base64)."""
        items = list(files)
        if any(isinstance(item, dict) for item in items):
            body = [self._upload_item(item) for item in items]
            response = self._json("POST", f"/image_sets/{imageset_id}/uploads", json={"files": body})
        else:
            parts = [("file", (Path(i).name, Path(i).read_bytes()) if isinstance(i, (str, Path)) else tuple(i))
                     for i in items]
            response = self._json("POST", f"/image_sets/{imageset_id}/uploads", files=parts)
        return [m.UploadResult.from_dict(r) for r in response["results"]]

    @staticmethod
    def _upload_item(item) -> dict:
        if not isinstance(item, dict):
            name, content = (Path(item).name, Path(item).read_bytes()) if isinstance(item, (str, Path)) else item
            item = {"name": name, "content": content}
        out = {k: v for k, v in item.items() if k != "content"}
        out["content_base64"] = base64.b64encode(item["content"]).decode()
        return out

    @operation("app.api.url_imports.list_imports")
    def list_imports(self, imageset_id: int, per_page: int = 100) -> Iterator[m.UrlImport]:
        return self._pages(f"/image_sets/{imageset_id}/imports", "imports", m.UrlImport, per_page)

    @operation("app.api.url_imports.create_import")
    def create_import(self, imageset_id: int, urls: Iterable[str]) -> m.UrlImport:
        return m.UrlImport.from_dict(self._json("POST", f"/image_sets/{imageset_id}/imports",
                                                json={"urls": list(urls)}, expect=(202,)))

    @operation("app.api.url_imports.get_import")
    def get_import(self, import_id: int) -> m.UrlImport:
        return m.UrlImport.from_dict(self._json("GET", f"/imports/{import_id}"))

    @operation("app.api.url_imports.import_report")
    def import_report(self, import_id: int, outcome: str | None = None, per_page: int = 1000) -> Iterator[m.UrlReport]:
        return self._pages(f"/imports/{import_id}/report", "urls", m.UrlReport, per_page, outcome=outcome)

    def wait_for_import(self, import_id: int, *, timeout: float | None = None,
                        progress: Callable[[m.UrlImport], None] | None = None, interval: float = 0.5) -> m.UrlImport:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get_import(import_id)
            if progress:
                progress(current)
            if current.status in ("finished", "failed"):
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise LabelStoreError(None, "timed out", f"import {import_id} still {current.status} after {timeout} s")
            time.sleep(interval)
            interval = min(interval * 1.5, 5.0)

    # --- images ----------------------------------------------------------------------------------------

    @operation("app.api.images.list_images")
    def list_images(self, *, imageset_id: int | None = None, md5: str | None = None, type: str | None = None,
                    date_taken_from: datetime | str | None = None, date_taken_to: datetime | str | None = None,
                    camera_make: str | None = None, camera_model: str | None = None,
                    per_page: int = 1000) -> Iterator[m.Image]:
        """Every matching image, paged with the API's cursor (deep pages cost what the first costs)."""
        return self._cursor("/images", "images", m.Image, per_page, imageset_id=imageset_id, md5=md5, type=type,
                            date_taken_from=_isoformat(date_taken_from), date_taken_to=_isoformat(date_taken_to),
                            camera_make=camera_make, camera_model=camera_model)

    @operation("app.api.images.redirect")
    def image_location(self, image_id: int) -> str:
        """The short-lived read-only URL the API redirects to (a SAS: keep it to yourself)."""
        return self._location(f"/images/{image_id}")

    @operation("app.api.images.update")
    def update_image(self, image_id: int, *, type: str | None = _UNSET, tss_id: str | None = _UNSET,
                     metadata: dict | None = _UNSET, location_description: str | None = _UNSET) -> m.Image:
        body = _drop_unset(type=type, tss_id=tss_id, metadata=metadata, location_description=location_description)
        return m.Image.from_dict(self._json("PATCH", f"/images/{image_id}", json=body))

    @operation("app.api.images.read_url")
    def image_read_url(self, image_id: int) -> m.SignedUrl:
        return m.SignedUrl.from_dict(self._json("GET", f"/images/{image_id}/url"))

    @operation("app.api.images.delete")
    def delete_image(self, image_id: int, *, force: bool = False) -> m.Image:
        """Deletes the image (202, `deleting`) or, with `force` while something holds it, retires it (200)."""
        return m.Image.from_dict(self._json("DELETE", f"/images/{image_id}", params={"force": force} if force
                                            else None, expect=(200, 202)))

    @operation("app.api.images.metadata")
    def get_image(self, image_id: int) -> m.Image:
        return m.Image.from_dict(self._json("GET", f"/images/{image_id}/metadata"))

    @operation("app.api.images.grayscale")
    def grayscale_location(self, image_id: int) -> str:
        return self._location(f"/images/{image_id}/grayscale")

    @operation("app.api.images.thumbnail")
    def thumbnail_location(self, image_id: int) -> str:
        return self._location(f"/images/{image_id}/thumbnail")

    @operation("app.api.images.redirect_by_md5")
    def image_location_by_md5(self, md5: str) -> str:
        return self._location(f"/images/md5/{md5}")

    @operation("app.api.images.metadata_by_md5")
    def get_image_by_md5(self, md5: str) -> m.Image:
        return m.Image.from_dict(self._json("GET", f"/images/md5/{md5}/metadata"))

    def download_image(self, image_id: int, to: str | Path | IO[bytes]) -> int:
        """Streams the image's bytes through its read URL into a file (path or binary file); answers the size."""
        return self._download(self.image_read_url(image_id).url, to)

    @staticmethod
    def _download(url: str, to: str | Path | IO[bytes]) -> int:
        with httpx.stream("GET", url, timeout=60.0) as response:
            if response.status_code != 200:
                raise LabelStoreError(response.status_code, "download failed", "the storage refused the read URL")
            return _write_stream(response.iter_bytes(), to)

    # --- campaigns and labels ---------------------------------------------------------------------------

    @operation("app.api.campaigns.list_campaigns")
    def list_campaigns(self, per_page: int = 100, *, status: str | None = None) -> Iterator[m.Campaign]:
        """Every campaign but archived ones, or those in `status` (archived included)."""
        return self._pages("/campaigns", "campaigns", m.Campaign, per_page, status=status)

    @operation("app.api.campaigns.create")
    def create_campaign(self, title: str, labeler_email: str, *, metadata: dict | None = None,
                        label_translations: dict[str, str] | None = None,
                        labels: list[str] | None = None) -> m.CampaignWithToken:
        body = {"title": title, "labeler_email": labeler_email, "metadata": metadata,
                "label_translations": label_translations, "labels": labels}
        return m.CampaignWithToken.from_dict(self._json("POST", "/campaigns", json=body, expect=(201,)))

    @operation("app.api.campaigns.get")
    def get_campaign(self, campaign_id: int) -> m.Campaign:
        return m.Campaign.from_dict(self._json("GET", f"/campaigns/{campaign_id}"))

    @operation("app.api.campaigns.archive")
    def archive_campaign(self, campaign_id: int) -> m.Campaign:
        """A finished campaign, archived: hidden from default listings; its retired images may then go."""
        return m.Campaign.from_dict(self._json("POST", f"/campaigns/{campaign_id}/archive"))

    @operation("app.api.campaigns.change_status")
    def change_campaign_status(self, campaign_id: int, new_status: str) -> m.Campaign:
        """new_status: active, completed or finished."""
        return m.Campaign.from_dict(self._json("PUT", f"/campaigns/{campaign_id}", json={"new_status": new_status}))

    @operation("app.api.campaigns.update")
    def update_campaign(self, campaign_id: int, *, metadata: dict | None = _UNSET,
                        label_translations: dict | None = _UNSET, labels: list[str] | None = _UNSET) -> m.Campaign:
        body = _drop_unset(metadata=metadata, label_translations=label_translations, labels=labels)
        return m.Campaign.from_dict(self._json("PATCH", f"/campaigns/{campaign_id}", json=body))

    @operation("app.api.campaigns.list_images")
    def list_campaign_images(self, campaign_id: int, per_page: int = 1000) -> Iterator[m.ImageLink]:
        return self._pages(f"/campaigns/{campaign_id}/images", "images", m.ImageLink, per_page)

    @operation("app.api.campaigns.add_images")
    def add_images_to_campaign(self, campaign_id: int, images: Iterable[int | str]) -> int:
        """Adds images by id (int) or filepath (str); answers how many were new to the campaign."""
        return self._json("POST", f"/campaigns/{campaign_id}/images", json=_refs(images))["added"]

    @operation("app.api.campaigns.list_objects")
    def list_campaign_objects(self, campaign_id: int, per_page: int = 1000) -> Iterator[m.ImageObjects]:
        return self._pages(f"/campaigns/{campaign_id}/objects", "images", m.ImageObjects, per_page)

    @operation("app.api.campaigns.submit_objects")
    def submit_objects(self, campaign_id: int, items: list[dict]) -> m.Submitted:
        """items: LabelAPI's body, [{"image_id": 1, "objects": [{"bounding_box": {...}, "label": "..."}]}]."""
        return m.Submitted.from_dict(self._json("PUT", f"/campaigns/{campaign_id}/objects", json=items))

    @operation("app.api.campaigns.revisions")
    def list_revisions(self, campaign_id: int, image_id: int) -> list[m.Revision]:
        body = self._json("GET", f"/campaigns/{campaign_id}/images/{image_id}/revisions")
        return [m.Revision.from_dict(r) for r in body["revisions"]]

    @operation("app.api.campaigns.image_objects")
    def image_objects(self, image_id: int, campaigns: Iterable[int] | None = None) -> list[m.Object]:
        params = {"campaigns": ",".join(str(c) for c in campaigns)} if campaigns else None
        return [m.Object.from_dict(o) for o in self._json("GET", f"/images/{image_id}/objects", params=params)]

    # --- datasets --------------------------------------------------------------------------------------

    @operation("app.api.datasets.list_versions")
    def list_dataset_versions(self, campaign_id: int) -> list[m.Dataset]:
        body = self._json("GET", f"/campaigns/{campaign_id}/datasets")
        return [m.Dataset.from_dict(d) for d in body["datasets"]]

    @operation("app.api.datasets.create_version")
    def create_dataset_version(self, campaign_id: int) -> m.Dataset:
        return m.Dataset.from_dict(self._json("POST", f"/campaigns/{campaign_id}/datasets", expect=(202,)))

    @operation("app.api.datasets.get_version")
    def get_dataset_version(self, campaign_id: int, version: int) -> m.DatasetWithFiles:
        return m.DatasetWithFiles.from_dict(self._json("GET", f"/campaigns/{campaign_id}/datasets/{version}"))

    @operation("app.api.datasets.retry")
    def retry_dataset_version(self, campaign_id: int, version: int) -> m.Dataset:
        return m.Dataset.from_dict(self._json("POST", f"/campaigns/{campaign_id}/datasets/{version}/retry",
                                              expect=(202,)))

    def wait_for_dataset(self, campaign_id: int, version: int, *, timeout: float | None = None,
                         interval: float = 0.5) -> m.DatasetWithFiles:
        """Polls until the version is exported, registered or failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get_dataset_version(campaign_id, version)
            if current.status != "pending":
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise LabelStoreError(None, "timed out", f"dataset version {version} still pending after {timeout} s")
            time.sleep(interval)
            interval = min(interval * 1.5, 5.0)

    @operation("app.api.datasets.coco")
    def export_coco(self, campaign_id: int, to: str | Path | IO[bytes], version: int | None = None) -> int:
        """Streams the COCO export (current labels, or a dataset version's) to a file; answers bytes written.
        json.load the file for the document itself."""
        response = self.request("GET", f"/campaigns/{campaign_id}/coco", params=_params(version=version), stream=True)
        try:
            return _write_stream(response.iter_bytes(), to)
        finally:
            response.close()

    def download_dataset_files(self, campaign_id: int, version: int, folder: str | Path) -> list[Path]:
        """Writes an exported version's files (annotations.jsonl, MLTable) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for file in self.get_dataset_version(campaign_id, version).files:
            target = folder / Path(file.name).name
            self._download(file.url, target)
            written.append(target)
        return written

    # --- operations ------------------------------------------------------------------------------------

    @operation("app.api.operations.list_jobs")
    def list_jobs(self, *, status: str | None = None, task: str | None = None, per_page: int = 100) -> Iterator[m.Job]:
        return self._pages("/jobs", "jobs", m.Job, per_page, status=status, task=task)

    @operation("app.api.operations.retry_job")
    def retry_job(self, job_id: int) -> m.Job:
        return m.Job.from_dict(self._json("POST", f"/jobs/{job_id}/retry", expect=(202,)))

    @operation("app.api.operations.get_job")
    def get_job(self, job_id: int) -> dict:
        """The job, with each failed attempt's error and traceback (`failures`)."""
        return self._json("GET", f"/jobs/{job_id}")

    @operation("app.api.operations.queue")
    def queue(self) -> dict:
        """Jobs per queue, task and status (`counts`), and the workers with their last heartbeat (`workers`)."""
        return self._json("GET", "/queue")

    @operation("app.api.operations.finishing_histogram")
    def finishing_histogram(self, minutes: int = 60) -> list[m.MinuteCounts]:
        body = self._json("GET", "/monitoring/finishing", params={"minutes": minutes})
        return [m.MinuteCounts.from_dict(b) for b in body["minutes"]]

    @operation("app.api.operations.ingest_histogram")
    def ingest_histogram(self, minutes: int = 60) -> list[m.MinuteCounts]:
        body = self._json("GET", "/monitoring/ingest", params={"minutes": minutes})
        return [m.MinuteCounts.from_dict(b) for b in body["minutes"]]


def _write_stream(chunks: Iterable[bytes], to: str | Path | IO[bytes]) -> int:
    """Writes chunks to a binary file object, or to a path through a temporary name (no half file left)."""
    if not isinstance(to, (str, Path)):
        return sum(to.write(chunk) or len(chunk) for chunk in chunks)
    target = Path(to)
    partial = target.with_name(f".{target.name}.part")
    try:
        with partial.open("wb") as sink:
            size = sum(sink.write(chunk) for chunk in chunks)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return size
