"""Python client of the Label Store API, and the `labelstore` command (labelstore_client.cli).

    from labelstore_client import Client
    with Client("https://labelstore.example.org", key, secret) as ls:
        summary = ls.upload_directory("photos/", title="Beach 2026")
"""
from labelstore_client.client import Client
from labelstore_client.errors import LabelStoreError
from labelstore_client.upload import UploadSummary, upload_directory

__all__ = ["Client", "LabelStoreError", "UploadSummary", "upload_directory"]
__version__ = "0.1.0"
