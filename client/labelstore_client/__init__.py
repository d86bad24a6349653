"""Python client of the Label Store API, and the `labelstore` command (labelstore_client.cli).

    from labelstore_client import Client
    with Client("https://labelstore.example.org", key, secret) as ls:
        summary = ls.upload_directory("photos/", title="Beach 2026")
"""
from labelstore_client.client import Client
from labelstore_client.errors import LabelStoreError

__all__ = ["Client", "LabelStoreError", "UploadSummary", "upload_directory"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """upload_directory and UploadSummary load azure-storage-blob only when asked for (a faster command start)."""
    if name in ("UploadSummary", "upload_directory"):
        from labelstore_client import upload

        return getattr(upload, name)
    raise AttributeError(name)
