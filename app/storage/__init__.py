"""Blob storage: the only code that imports azure.storage.

Provider errors become StorageError (a domain error); SAS expiries are computed per call, from an injected
clock. Without an account key, SAS are signed with a user delegation key, and never outlive it: Azure
rejects a user delegation SAS once its key has expired, whatever the SAS's own expiry says.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from urllib.parse import quote

import requests
from azure.core.exceptions import (AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError,
                                   ServiceRequestTimeoutError, ServiceResponseTimeoutError)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (BlobBlock, BlobSasPermissions, BlobServiceClient, ContainerSasPermissions, ContentSettings,
                                ExponentialRetry, generate_blob_sas, generate_container_sas)

from app.errors import DomainError

logger = logging.getLogger(__name__)


class StorageError(DomainError):
    status, title = 503, "Storage Unavailable"
    retry_after = 5


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# Azure refuses a user delegation key that expires more than 7 days after its own clock: ask for a little less,
# so a client clock a few minutes ahead still gets one.
DELEGATION_KEY_LIFETIME = timedelta(days=7) - timedelta(minutes=10)
DELEGATION_KEY_BACKDATE = timedelta(minutes=5)  # valid from a little earlier, for the same reason
# A cached key is reused for a SAS it cannot cover whole when it falls short of a fresh key by no more than this
# (the SAS is cut to the key's expiry): at most one key request per this long, however many dropboxes are made.
DELEGATION_KEY_REUSE_SLACK = timedelta(minutes=5)


class UnlistableUploadArea(DomainError):
    """Listing the upload area fails on something in it, not for an outage: retrying cannot help."""
    status, title = 409, "Upload Area Cannot Be Listed"


@dataclass(frozen=True)
class BlobInfo:
    """A listed upload: its name and the size storage reports (no uploader-set header is carried: the facts
    about its bytes come from reading what is stored)."""
    name: str
    size: int


@dataclass(frozen=True)
class StoredBytes:
    size: int
    md5: str  # hex, computed from the bytes read
    head: bytes
    tail: bytes
    headers: tuple  # the blob's (Content-Type, Content-MD5 hex or None, Content-Disposition, Content-Encoding)


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: datetime  # the SAS's own `se`, to the second


@dataclass(frozen=True)
class _DelegationKey:
    key: object  # azure.storage.blob.UserDelegationKey
    expires_at: datetime  # its `ske`, as the service returned it


class BlobStorage:
    """`credential` (azure-identity, for an account URL) and `clock` (aware UTC now) come from outside, so a test
    can hand in a stand-in and age time without sleeping. Without a credential, DefaultAzureCredential() is built
    on first use."""

    def __init__(self, *, connection_string: str | None = None, account_url: str | None = None,
                 container: str, timeout: float = 20.0, retries: int = 3, credential=None,
                 clock: Callable[[], datetime] = utcnow, connection_verify: bool | str = True):
        if not connection_string and not account_url:
            raise ValueError("blob storage needs a connection string or an account URL")
        self._connection_string, self._account_url = connection_string, account_url
        self.container = container
        self._credential, self._clock = credential, clock
        self._delegation: _DelegationKey | None = None
        self._delegation_lock = threading.Lock()
        self._timeout, self._retries, self._connection_verify = timeout, retries, connection_verify

    @classmethod
    def from_settings(cls, settings, **options) -> "BlobStorage":
        conn = settings.azure_storage_connection_string
        options = {"timeout": settings.azure_storage_timeout_seconds, "retries": settings.azure_storage_retries,
                   **options}
        return cls(connection_string=conn.get_secret_value() if conn else None,
                   account_url=settings.azure_storage_account_url,
                   container=settings.azure_storage_imageset_container, **options)

    def with_limits(self, *, timeout: float, retries: int) -> "BlobStorage":
        """The same account, container, credential and clock, with other network limits (e.g. for health probes)."""
        return BlobStorage(connection_string=self._connection_string, account_url=self._account_url,
                           container=self.container, timeout=timeout, retries=retries, credential=self.credential,
                           clock=self._clock, connection_verify=self._connection_verify)

    @property
    def credential(self):
        """The token credential for an account URL (None with a connection string)."""
        if self._credential is None and not self._connection_string:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    @cached_property
    def service(self) -> BlobServiceClient:
        # One connection pool as large as the most threads that share it (finishing runs 16 by default;
        # the SDK's default pool of 10 would open and drop connections all the time).
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # The SDK hands its connection_timeout/read_timeout only to a transport it builds itself: ours takes them
        # here, or every call waits up to the transport's default of 300 s on a dependency that never answers.
        transport = RequestsTransport(session=session, session_owner=False, connection_timeout=self._timeout,
                                      read_timeout=self._timeout, connection_verify=self._connection_verify)
        # The SDK's default backoff starts at 15 s; a job that fails should fail fast and let the queue retry.
        options = {"transport": transport, "retry_policy": ExponentialRetry(
            initial_backoff=0.5, increment_base=2, retry_total=self._retries, random_jitter_range=0.5)}
        if self._connection_string:
            return BlobServiceClient.from_connection_string(self._connection_string, **options)
        return BlobServiceClient(self._account_url, credential=self.credential, **options)

    @cached_property
    def container_client(self):
        # One client for the image container, shared by every thread (the SDK's clients are thread-safe):
        # building one per call cost about a tenth of each small upload's CPU.
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

    def _signing(self, expiry: datetime) -> tuple[dict, datetime]:
        """What signs a SAS meant to last until `expiry`, and the expiry it may really have (never after its key's).

        The account key when we hold one; else a user delegation key valid until the SAS expires, or as near to
        that as Azure allows (DELEGATION_KEY_LIFETIME from now)."""
        expiry = expiry.astimezone(timezone.utc).replace(microsecond=0)  # a SAS carries whole seconds
        key = getattr(self.service.credential, "account_key", None)
        if key:
            return {"account_key": key}, expiry
        delegation = self._delegation_key(expiry)
        return {"user_delegation_key": delegation.key}, min(expiry, delegation.expires_at)

    def _delegation_key(self, expiry: datetime) -> _DelegationKey:
        def good_enough(cached: _DelegationKey | None) -> bool:
            best = self._clock() + DELEGATION_KEY_LIFETIME - DELEGATION_KEY_REUSE_SLACK
            return cached is not None and cached.expires_at >= min(expiry, best)

        cached = self._delegation
        if good_enough(cached):
            return cached
        with self._delegation_lock:  # one request at a time; whoever waited finds the fresh key
            if good_enough(self._delegation):
                return self._delegation
            now = self._clock()
            try:
                key = self.service.get_user_delegation_key(now - DELEGATION_KEY_BACKDATE, now + DELEGATION_KEY_LIFETIME)
            except AzureError as exc:
                raise StorageError(f"cannot get a user delegation key to sign a SAS: {_short(exc)}") from exc
            expires_at = datetime.strptime(key.signed_expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            self._delegation = _DelegationKey(key, expires_at)
            logger.info("got a user delegation key", extra={"key_expires_at": expires_at.isoformat()})
            return self._delegation

    def _protocol(self) -> str:
        return "https,http" if self.is_emulator else "https"

    def blob_read_url(self, container: str, name: str, ttl: timedelta, *, content_type: str | None = None) -> SignedUrl:
        """A read SAS for one blob. With `content_type`, the SAS itself sets the response's Content-Type,
        whatever headers the blob was stored with."""
        signing, expiry = self._signing(self._clock() + ttl)
        sas = generate_blob_sas(self.service.account_name, container, name, permission=BlobSasPermissions(read=True),
                                expiry=expiry, protocol=self._protocol(), content_type=content_type, **signing)
        return SignedUrl(f"{self.service.url.rstrip('/')}/{container}/{quote(name)}?{sas}", expiry)

    def image_read_url(self, path: str, ttl: timedelta, *, content_type: str | None = None) -> SignedUrl:
        return self.blob_read_url(self.container, path, ttl, content_type=content_type)

    def upload_area_url(self, container: str, ttl: timedelta) -> SignedUrl:
        """A container SAS to upload into one set's area: create, write, add and list; never read or delete."""
        signing, expiry = self._signing(self._clock() + ttl)
        permission = ContainerSasPermissions(read=False, write=True, delete=False, list=True, add=True, create=True)
        sas = generate_container_sas(self.service.account_name, container, permission=permission, expiry=expiry,
                                     protocol=self._protocol(), **signing)
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
        for blob in self._listing(container, lambda area: area.list_blobs()):
            yield BlobInfo(blob.name, blob.size)

    def upload_area_pages(self, container: str, *, page_size: int, continuation_token: str | None = None,
                          names_only: bool = False) -> Iterator[tuple[str | None, list[BlobInfo]]]:
        """The area's listing page by page from `continuation_token` (None: the start), each page with the token
        that lists it again: a page is a unit of work that any worker can find again later. With `names_only`
        the sizes are 0 and the page is read several times faster (the SDK's names-only parser)."""
        def pages(area):
            listing = area.list_blob_names if names_only else area.list_blobs
            paged = listing(results_per_page=page_size).by_page(continuation_token=continuation_token)
            token = continuation_token
            for page in paged:
                yield token, [BlobInfo(blob, 0) if names_only else BlobInfo(blob.name, blob.size) for blob in page]
                token = paged.continuation_token
                if not token:
                    return

        yield from self._listing(container, pages)

    def put_image(self, path: str, stream, *, length: int, content_type: str, md5_hex: str) -> None:
        """Store bytes the service holds (a direct upload, a fetched URL) in the image container, with the
        Content-Type and Content-MD5 the service worked out from them."""
        self.container_client.upload_blob(
            path, stream, length=length, overwrite=True, max_concurrency=2,
            content_settings=ContentSettings(content_type=content_type, content_md5=bytearray.fromhex(md5_hex)))

    def _listing(self, container: str, pages) -> Iterator:
        """What `pages(area)` lists; nothing when the area is gone. A listing that fails while the area itself
        answers is a name storage cannot list: UnlistableUploadArea, which retrying cannot mend."""
        area = self.service.get_container_client(container)
        try:
            yield from pages(area)
        except ResourceNotFoundError:
            return
        except HttpResponseError as exc:
            if exc.status_code is None or exc.status_code < 500:
                raise
            try:
                area.get_container_properties()
            except AzureError:
                raise exc from None  # storage itself is failing: an outage, retried
            raise UnlistableUploadArea(
                f"blob storage answers, but cannot list upload area {container!r} (HTTP {exc.status_code}): it holds "
                "a file whose name storage cannot list, such as one with control characters. Remove that file from "
                "the container (Azure Storage Explorer or az storage blob delete), then finish the set again."
            ) from exc

    def read_image_through(self, path: str, *, head_limit: int, tail_size: int,
                           chunk_size: int = 1024 * 1024) -> StoredBytes:
        """One pass over a blob of the image container in ranged reads: the MD5 of every stored byte, its
        size, its first `head_limit` and last `tail_size` bytes. Memory stays at one chunk plus the head."""
        blob = self.container_client.get_blob_client(path)
        digest, head, tail = hashlib.md5(usedforsecurity=False), bytearray(), b""
        offset, size, headers = 0, None, ()
        while size is None or offset < size:
            downloader = blob.download_blob(offset=offset, length=chunk_size)
            if size is None:
                size, stored = downloader.properties.size, downloader.properties.content_settings
                headers = (stored.content_type, bytes(stored.content_md5).hex() if stored.content_md5 else None,
                           stored.content_disposition, stored.content_encoding)
            data = downloader.readall()
            if not data:
                break
            digest.update(data)
            if len(head) < head_limit:
                head += data[:head_limit - len(head)]
            tail = (tail + data)[-tail_size:]
            offset += len(data)
        return StoredBytes(size=offset, md5=digest.hexdigest(), head=bytes(head), tail=tail, headers=headers)

    def describe_image(self, path: str, stored: StoredBytes, *, content_type: str) -> None:
        """Make the blob's headers the ones the service worked out: the detected Content-Type, the computed
        Content-MD5, nothing else the uploader set (a disposition, an encoding). No request when a careful
        uploader (azcopy --put-md5) already stored exactly these."""
        if stored.headers == (content_type, stored.md5, None, None):
            return
        self.container_client.get_blob_client(path).set_http_headers(
            ContentSettings(content_type=content_type, content_md5=bytearray.fromhex(stored.md5)))

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
        """Container exists; a probe blob can be written and deleted; a SAS can be signed (keyless, that takes a
        user delegation key, which the identity's role must allow: cached, so asked for about once a week).
        Raises StorageError."""
        name = f"_probe/{uuid.uuid4().hex}"
        try:
            container = self.container_client
            container.get_container_properties()
            container.upload_blob(name, b"probe", overwrite=True)
            container.delete_blob(name)
            self._signing(self._clock() + timedelta(minutes=1))
        except ResourceNotFoundError as exc:
            raise StorageError(f"blob container {self.container!r} does not exist") from exc
        except AzureError as exc:
            raise StorageError(f"blob storage unreachable: {_short(exc)}") from exc

    # --- renditions: blobs beside each image, at renditions/<rendition>/<image path>.<extension>

    def read_image(self, path: str, max_bytes: int) -> bytes | None:
        """Every byte of an image blob; None when it is gone or larger than `max_bytes` (never more than
        `max_bytes` + 1 bytes are fetched)."""
        try:
            downloader = self.container_client.get_blob_client(path).download_blob(offset=0, length=max_bytes + 1)
            if downloader.properties.size > max_bytes:
                return None
            return downloader.readall()
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 416:  # a ranged read of an empty blob
                return b""
            raise

    @staticmethod
    def rendition_path(image_path: str, rendition: str, extension: str) -> str:
        return f"renditions/{rendition}/{image_path}.{extension}"

    def put_rendition(self, image_path: str, rendition: str, extension: str, data: bytes, *, content_type: str) -> None:
        self.container_client.upload_blob(self.rendition_path(image_path, rendition, extension), data, overwrite=True,
                                          content_settings=ContentSettings(content_type=content_type))

    def rendition_url(self, image_path: str, rendition: str, extension: str, ttl: timedelta, *,
                      content_type: str) -> SignedUrl:
        return self.blob_read_url(self.container, self.rendition_path(image_path, rendition, extension), ttl,
                                  content_type=content_type)

    def image_paths(self, prefix: str) -> Iterator[str]:
        """Names of the image container's blobs under `prefix`, page by page (what deleting a set sweeps)."""
        yield from self.container_client.list_blob_names(name_starts_with=prefix)


def _short(exc: Exception) -> str:
    """The first line of an Azure error, which carries no URL query (so no SAS) and no key; a timeout in the
    same words as a status check's deadline (both may end a hung probe, whichever comes first)."""
    if isinstance(exc, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
        return "no answer within the timeout" + (" (connect)" if isinstance(exc, ServiceRequestTimeoutError) else "")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
