"""One exception type for every failure the client reports: an API problem, a connection that kept failing, or
an upload that could not complete. Its text never holds a secret (no headers, no SAS)."""
from __future__ import annotations


class LabelStoreError(Exception):
    """status (None when no HTTP answer came), title, detail and the request id the service logged it under."""

    def __init__(self, status: int | None, title: str, detail: str = "", request_id: str | None = None,
                 type: str | None = None, body: dict | None = None):
        self.status, self.title, self.detail, self.request_id, self.type = status, title, detail, request_id, type
        self.body = body or {}  # the whole problem document (extra members such as current_status)
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.status} {self.title}" if self.status else self.title
        text = f"{head}: {self.detail}" if self.detail and self.detail != self.title else head
        return f"{text} (request {self.request_id})" if self.request_id else text

    def __repr__(self) -> str:
        return (f"LabelStoreError(status={self.status!r}, title={self.title!r}, detail={self.detail!r}, "
                f"request_id={self.request_id!r})")
