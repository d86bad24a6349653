"""Blob storage: the only code that imports azure.storage.

Provider errors become StorageError (a domain error); SAS expiries are computed per call.
"""
from __future__ import annotations

import logging
import uuid
from functools import cached_property

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ExponentialRetry

from app.errors import DomainError

logger = logging.getLogger(__name__)


class StorageError(DomainError):
    status, title = 503, "Storage Unavailable"


class BlobStorage:
    def __init__(self, *, connection_string: str | None = None, account_url: str | None = None,
                 container: str, timeout: float = 20.0, retries: int = 3):
        if not connection_string and not account_url:
            raise ValueError("blob storage needs a connection string or an account URL")
        self._connection_string, self._account_url = connection_string, account_url
        self.container = container
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
        if self._connection_string:
            return BlobServiceClient.from_connection_string(self._connection_string, **self._client_options)
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(self._account_url, credential=DefaultAzureCredential(), **self._client_options)

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
