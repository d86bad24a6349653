"""Blob storage: the only code that imports azure.storage.

Provider errors become StorageError (a domain error); SAS expiries are computed per call.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from urllib.parse import quote

import requests
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (BlobBlock, BlobSasPermissions, BlobServiceClient, ContainerSasPermissions, ExponentialRetry,
                                generate_blob_sas, generate_container_sas)

from app.errors import DomainError

logger = logging.getLogger(__name__)


class StorageError(DomainError):
    status, title = 503, "Storage Unavailable"


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    md5: str | None  # hex, when the service stored a Content-MD5


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: datetime


class BlobStorage:
    def __init__(self, *, connection_string: str | None = None, account_url: str | None = None,
                 container: str, timeout: float = 20.0, retries: int = 3):
        if not connection_string and not account_url:
            raise ValueError("blob storage needs a connection string or an account URL")
        self._connection_string, self._account_url = connection_string, account_url
        self.container = container
        self._delegation = None  # (user delegation key, its expiry)
        self._delegation_lock = threading.Lock()
        # The SDK's default backoff starts at 15 s; a job that fails should fail fast and let the queue retry.
        self._client_options = {"connection_timeout": timeout, "read_timeout": timeout, "retry_policy": ExponentialRetry(
            initial_backoff=0.5, increment_base=2, retry_total=retries, random_jitter_range=0.5)}

    @classmethod
    def from_settings(cls, settings, **options) -> "BlobStorage":
        conn = settings.azure_storage_connection_string
        return cls(connection_string=conn.get_secret_value() if conn else None,
                   account_url=settings.azure_storage_account_url,
                   container=settings.azure_storage_imageset_container, **options)

    @cached_property
    def service(self) -> BlobServiceClient:
        # One connection pool as large as the most threads that share it (finishing runs 16 by default;
        # the SDK's default pool of 10 would open and drop connections all the time).
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        options = {**self._client_options, "transport": RequestsTransport(session=session, session_owner=False)}
        if self._connection_string:
            return BlobServiceClient.from_connection_string(self._connection_string, **options)
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(self._account_url, credential=DefaultAzureCredential(), **options)

    @property
    def container_client(self):
        return self.service.get_container_client(self.container)

    @property
    def is_emulator(self) -> bool:
        return self.service.account_name == "devstoreaccount1"

    def ensure_container(self) -> None:
        try:
            self.container_client.create_container()
            logger.info("created blob container", extra={"container": self.container})
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise StorageError(f"cannot create blob container {self.container!r}: {type(exc).__name__}") from exc

    # --- signing: SAS expiries are computed per call, never at import or start-up

    def _signing(self) -> dict:
        """account_key when we hold one, else a user delegation key (cached until shortly before it expires)."""
        key = getattr(self.service.credential, "account_key", None)
        if key:
            return {"account_key": key}
        with self._delegation_lock:
            now = datetime.now(timezone.utc)
            if self._delegation is None or self._delegation[1] - now < timedelta(hours=1):
                expiry = now + timedelta(days=7)
                self._delegation = (self.service.get_user_delegation_key(now - timedelta(minutes=5), expiry), expiry)
            return {"user_delegation_key": self._delegation[0]}

    def _protocol(self) -> str:
        return "https,http" if self.is_emulator else "https"

    def blob_read_url(self, container: str, name: str, ttl: timedelta) -> SignedUrl:
        expiry = datetime.now(timezone.utc) + ttl
        sas = generate_blob_sas(self.service.account_name, container, name, permission=BlobSasPermissions(read=True),
                                expiry=expiry, protocol=self._protocol(), **self._signing())
        return SignedUrl(f"{self.service.url.rstrip('/')}/{container}/{quote(name)}?{sas}", expiry)

    def image_read_url(self, path: str, ttl: timedelta) -> SignedUrl:
        return self.blob_read_url(self.container, path, ttl)

    def upload_area_url(self, container: str, ttl: timedelta) -> SignedUrl:
        """A container SAS to upload into one set's area: create, write, add and list; never read or delete."""
        expiry = datetime.now(timezone.utc) + ttl
        permission = ContainerSasPermissions(read=False, write=True, delete=False, list=True, add=True, create=True)
        sas = generate_container_sas(self.service.account_name, container, permission=permission, expiry=expiry,
                                     protocol=self._protocol(), **self._signing())
        return SignedUrl(f"{self.service.url.rstrip('/')}/{container}?{sas}", expiry)

    # --- upload areas (one container per image set)

    def create_upload_area(self, container: str) -> None:
        try:
            self.service.create_container(container)
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise StorageError(f"cannot create the upload area: {_short(exc)}") from exc

    def delete_upload_area(self, container: str) -> None:
        try:
            self.service.delete_container(container)
        except ResourceNotFoundError:
            pass

    def list_upload_area(self, container: str) -> Iterator[BlobInfo]:
        """Every blob in the area, page by page (never all names in memory at once)."""
        try:
            for blob in self.service.get_container_client(container).list_blobs():
                md5 = blob.content_settings.content_md5 if blob.content_settings else None
                yield BlobInfo(blob.name, blob.size, bytes(md5).hex() if md5 else None)
        except ResourceNotFoundError:
            return

    def count_upload_area(self, container: str) -> int:
        try:
            return sum(1 for _ in self.service.get_container_client(container).list_blob_names())
        except ResourceNotFoundError:
            return 0

    def read_range(self, container: str, name: str, offset: int, length: int) -> bytes:
        return self.service.get_blob_client(container, name).download_blob(offset=offset, length=length).readall()

    def stream_md5(self, container: str, name: str) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        for chunk in self.service.get_blob_client(container, name).download_blob().chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def copy_into_images(self, container: str, name: str, path: str) -> None:
        """Server-side, synchronous copy (Copy Blob From URL, up to 256 MiB) into the image container."""
        source = self.blob_read_url(container, name, timedelta(minutes=30)).url
        self.container_client.get_blob_client(path).start_copy_from_url(source, requires_sync=True)

    def upload_bytes(self, path: str, data: bytes) -> None:
        self.container_client.upload_blob(path, data, overwrite=True)

    def upload_stream(self, path: str, chunks: Iterator[bytes], block_size: int = 4 * 1024 * 1024) -> None:
        """Upload as the chunks come, in blocks of about `block_size`: memory stays at one block."""
        blob = self.container_client.get_blob_client(path)
        block_ids, buffer = [], bytearray()

        def stage():
            block_id = base64.b64encode(f"{len(block_ids):08d}".encode()).decode()
            blob.stage_block(block_id, bytes(buffer))
            block_ids.append(BlobBlock(block_id))
            buffer.clear()

        for chunk in chunks:
            buffer += chunk
            if len(buffer) >= block_size:
                stage()
        if buffer or not block_ids:
            stage()
        blob.commit_block_list(block_ids)

    def delete_image(self, path: str) -> None:
        try:
            self.container_client.delete_blob(path)
        except ResourceNotFoundError:
            pass

    def probe(self) -> None:
        """Container exists; a probe blob can be written and deleted. Raises StorageError."""
        name = f"_probe/{uuid.uuid4().hex}"
        try:
            container = self.container_client
            container.get_container_properties()
            container.upload_blob(name, b"probe", overwrite=True)
            container.delete_blob(name)
        except ResourceNotFoundError as exc:
            raise StorageError(f"blob container {self.container!r} does not exist") from exc
        except AzureError as exc:
            raise StorageError(f"blob storage unreachable: {_short(exc)}") from exc


def _short(exc: Exception) -> str:
    """The first line of an Azure error, which carries no URL query (so no SAS) and no key."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
