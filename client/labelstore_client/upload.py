"""upload_directory: every image file under a folder into an image set's dropbox, resumably, then finishing.

The dropbox is a container SAS (create, write, add, list; never read). Each file becomes the blob named by its
path relative to the folder (forward slashes), uploaded with azure-storage-blob (one PUT up to 8 MiB, blocks of
8 MiB above) with its Content-MD5 set. Before uploading, the container is listed (LIST is allowed): a blob with
the file's size and MD5 is already there, so a re-run after an interruption sends only what is missing or
different. When storage refuses the SAS (403: expired, or replaced), a fresh one is asked for
(POST /image_sets/{id}/dropbox_url) and the call made again."""
from __future__ import annotations

import hashlib
import mimetypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import requests
from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import ContainerClient, ContentSettings

from labelstore_client import models as m
from labelstore_client.errors import LabelStoreError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
BLOCK = 8 * 1024 * 1024  # one PUT up to this size; blocks of this size above it
HASH_CHUNK = 1024 * 1024
REFRESHES = 2  # fresh SAS URLs asked for one call before giving up

# progress(stage, done, total): stage "upload" counts files (uploaded or found already there), stage "finish"
# counts files finishing has sorted (total None until the service has counted them).
Progress = Callable[[str, int, "int | None"], None]


@dataclass
class LocalFile:
    name: str  # the blob name: the path relative to the folder, with forward slashes
    path: Path
    size: int


@dataclass
class UploadSummary:
    image_set: m.ImageSet
    files: int = 0  # image files found under the folder
    uploaded: int = 0
    skipped: int = 0  # already in the dropbox with the same size and MD5
    bytes_uploaded: int = 0
    report: str = ""  # where the per-file outcome is (API path)
    refreshed_dropbox_url: int = 0  # how many times a fresh SAS was asked for
    already: str | None = None  # the set's status when it was past `created` already (nothing was sent then)
    failures: list[tuple[str, str]] = field(default_factory=list)


def scan(folder: str | Path, suffixes=IMAGE_SUFFIXES) -> list[LocalFile]:
    """The image files under `folder` (by suffix, case-insensitive), hidden files and folders left out, sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise LabelStoreError(None, "not a folder", f"{folder} is not a folder")
    found = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(names):
            path = Path(directory) / name
            if name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
                continue
            found.append(LocalFile(path.relative_to(root).as_posix(), path, path.stat().st_size))
    return found


def md5_of(path: Path) -> bytes:
    digest = hashlib.md5()
    with path.open("rb") as source:
        while chunk := source.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.digest()


class Dropbox:
    """The set's upload area; swaps in a fresh SAS from the service when storage refuses the one in use."""

    def __init__(self, client, imageset_id: int, url: str, concurrency: int):
        self.client, self.imageset_id = client, imageset_id
        self.session = requests.Session()
        self.session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency + 2))
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency + 2))
        self.lock = threading.Lock()
        self.generation = self.refreshed = 0
        self.container = self._open(url)

    def _open(self, url: str) -> ContainerClient:
        return ContainerClient.from_container_url(
            url, transport=RequestsTransport(session=self.session, session_owner=False),
            max_single_put_size=BLOCK, max_block_size=BLOCK)

    def _refresh(self, seen: int) -> None:
        with self.lock:
            if self.generation == seen:  # another thread may have refreshed it already
                fresh = self.client.new_dropbox_url(self.imageset_id)
                self.container = self._open(fresh.dropbox_url)
                self.generation += 1
                self.refreshed += 1

    def call(self, action: Callable[[ContainerClient], object]):
        for attempt in range(REFRESHES + 1):
            seen, container = self.generation, self.container
            try:
                return action(container)
            except HttpResponseError as exc:
                if exc.status_code != 403 or attempt == REFRESHES:
                    raise
                self._refresh(seen)

    def listing(self) -> dict[str, tuple[int, bytes | None]]:
        """name -> (size, Content-MD5) of every blob already in the area."""
        def list_all(container):
            return {b.name: (b.size, bytes(b.content_settings.content_md5 or b"") or None)
                    for b in container.list_blobs()}
        return self.call(list_all)

    def put(self, file: LocalFile, digest: bytes, data: bytes | None) -> None:
        settings = ContentSettings(content_type=mimetypes.guess_type(file.name)[0] or "application/octet-stream",
                                   content_md5=bytearray(digest))

        def upload(container):
            if data is not None:
                container.upload_blob(file.name, data, overwrite=True, content_settings=settings, max_concurrency=1)
                return
            with file.path.open("rb") as source:
                container.upload_blob(file.name, source, length=file.size, overwrite=True,
                                      content_settings=settings, max_concurrency=1)
        self.call(upload)

    def close(self) -> None:
        self.container.close()
        self.session.close()


def _reason(exc: Exception) -> str:
    """Why a file failed, without the SAS URL some SDK messages carry."""
    if isinstance(exc, HttpResponseError):
        return f"storage answered {exc.status_code} {exc.error_code or exc.reason or ''}".strip()
    if isinstance(exc, AzureError):
        return f"storage: {type(exc).__name__}"
    if isinstance(exc, LabelStoreError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def upload_directory(client, path: str | Path, image_set: int | m.ImageSet | None = None, *, title: str | None = None,
                     finish: bool = True, wait: bool = True, progress: Progress | None = None, concurrency: int = 16,
                     metadata: dict | None = None, wait_timeout: float | None = None,
                     on_set: Callable[[m.ImageSet], None] | None = None) -> UploadSummary:
    """Uploads the image files under `path` into `image_set` (an id, or a set; a new set titled `title` when
    None), skipping those already there with the same size and MD5; then, with finish, starts finishing and,
    with wait, waits for it (progress stage "finish"). `on_set` hears the set as soon as it is known (to say
    its id, for a re-run). Raises LabelStoreError when any file could not be uploaded (nothing is finished
    then: run again to send what is missing)."""
    progress = progress or (lambda stage, done, total: None)
    files = scan(path)
    if not files:
        raise LabelStoreError(None, "nothing to upload", f"no image files under {path}")
    if image_set is None:
        if not title:
            raise LabelStoreError(None, "no image set", "give an image set or a title for a new one")
        image_set = client.create_image_set(title, metadata=metadata)
    elif isinstance(image_set, int):
        image_set = client.get_image_set(image_set)
    if on_set:
        on_set(image_set)
    imageset_id = image_set.imageset_id
    summary = UploadSummary(image_set, files=len(files), report=f"/api/v1/image_sets/{imageset_id}/report")

    if image_set.status != "created":
        summary.already = image_set.status
    else:
        url = getattr(image_set, "dropbox_url", None) or client.new_dropbox_url(imageset_id).dropbox_url
        _send(client, imageset_id, url, files, summary, progress, concurrency)
        if summary.failures:
            name, reason = summary.failures[0]
            raise LabelStoreError(None, "upload incomplete",
                                  f"{len(summary.failures)} of {len(files)} files were not uploaded (first: {name}: "
                                  f"{reason}); run again with the same set to send what is missing")

    if finish and image_set.status in ("created", "failed"):
        try:
            summary.image_set = client.finish_image_set(imageset_id)
        except LabelStoreError as exc:
            if exc.status != 409:  # 409: finishing already started (another run, or an earlier one of ours)
                raise
    if finish and wait:
        def report(current: m.ImageSet) -> None:
            if current.progress:
                progress("finish", current.progress.done, current.progress.total)
        summary.image_set = client.wait_for_set(imageset_id, progress=report, timeout=wait_timeout)
    elif summary.image_set is image_set:  # as it is now, not as it was when the run began
        summary.image_set = client.get_image_set(imageset_id)
    return summary


def _send(client, imageset_id: int, url: str, files: list[LocalFile], summary: UploadSummary,
          progress: Progress, concurrency: int) -> None:
    dropbox = Dropbox(client, imageset_id, url, concurrency)
    try:
        there = dropbox.listing()
        done = 0
        progress("upload", 0, len(files))

        def one(file: LocalFile) -> bool:
            """True when uploaded, False when already there."""
            stored = there.get(file.name)
            if stored and stored[0] == file.size and stored[1] == md5_of(file.path):
                return False
            data = file.path.read_bytes() if file.size <= BLOCK else None
            digest = hashlib.md5(data).digest() if data is not None else md5_of(file.path)
            dropbox.put(file, digest, data)
            return True

        pool = ThreadPoolExecutor(max(1, concurrency))
        queued, pending = iter(files), {}  # a few files per thread queued at a time, not the whole folder
        try:
            while True:
                while len(pending) < 4 * max(1, concurrency) and (file := next(queued, None)):
                    pending[pool.submit(one, file)] = file
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    file = pending.pop(future)
                    try:
                        if future.result():
                            summary.uploaded += 1
                            summary.bytes_uploaded += file.size
                        else:
                            summary.skipped += 1
                    except Exception as exc:  # noqa: BLE001 - each file's failure is reported, the others go on
                        summary.failures.append((file.name, _reason(exc)))
                    done += 1
                progress("upload", done, len(files))
        except BaseException:  # Ctrl-C: stop now, not after every queued file (the next run resumes)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        summary.failures.sort()
    finally:
        summary.refreshed_dropbox_url = dropbox.refreshed
        dropbox.close()
