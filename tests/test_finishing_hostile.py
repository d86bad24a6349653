"""Files made to break finishing, uploaded through the dropbox as a careless or hostile client would: each is
rejected with its reason or stored safely, the set always finishes, and what is stored is what was checked."""
from __future__ import annotations

import base64
import hashlib
import io

import httpx
from PIL import ExifTags, Image, TiffImagePlugin

from app.state import app_state
from tests import images
from tests.helpers import blob_url, finish, put, report, upload_all


def _jpeg(exif: Image.Exif, seed: int) -> bytes:
    image = Image.new("RGB", (32, 24), (seed * 40 % 256, 20, 30))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def make_with_nul() -> bytes:
    """EXIF Make "Can<NUL>on": PostgreSQL cannot store a NUL in text or JSON."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "CanXon"
    return _jpeg(exif, 1).replace(b"CanXon", b"Can\x00on", 1)


def date_past_the_last_year() -> bytes:
    exif = Image.Exif()
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    ifd[ExifTags.Base.DateTimeOriginal] = "9999:12:31 23:59:59"
    ifd[0x9011] = "-23:59"  # OffsetTimeOriginal
    return _jpeg(exif, 2)


def gps_zero_over_zero() -> bytes:
    zero = TiffImagePlugin.IFDRational(0, 0)
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = "N", (zero, zero, zero)
    gps[ExifTags.GPS.GPSLongitudeRef], gps[ExifTags.GPS.GPSLongitude] = "E", (zero, zero, zero)
    return _jpeg(exif, 3)


def set_content_md5(dropbox_url: str, name: str, digest: bytes) -> None:
    """Set Blob Properties through the dropbox SAS: the uploader's word on the file's MD5."""
    response = httpx.put(blob_url(dropbox_url, name) + "&comp=properties", headers={
        "x-ms-version": "2021-08-06", "x-ms-blob-content-md5": base64.b64encode(digest).decode()})
    assert response.status_code == 200, response.text


def stored_paths(flask_app, title: str) -> set[str]:
    storage = app_state(flask_app).storage
    return {b.name for b in storage.container_client.list_blobs(name_starts_with=f"imagesets/{title}/")}


def test_hostile_files_never_block_the_set_and_leave_no_orphan_copy(client, admin, make_image_set, start_worker,
                                                                      flask_app):
    start_worker()
    good = images.png(seed=11)
    html_tail = images.jpeg(seed=12) + b"<script>alert(1)</script>"
    files = {
        "good.png": good, "again.png": good, "nul-make.jpg": make_with_nul(), "far-future.jpg": date_past_the_last_year(),
        "gps-nan.jpg": gps_zero_over_zero(), "long-md5.png": images.png(seed=13), "notes.jpg": images.text_as_jpeg(),
    }
    image_set = make_image_set("hostile")
    upload_all(image_set["dropbox_url"], files)
    set_content_md5(image_set["dropbox_url"], "long-md5.png", b"\x01" * 20)  # 40 hex characters, not 32
    response = httpx.put(blob_url(image_set["dropbox_url"], "page.jpg"), content=html_tail, headers={
        "x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06", "x-ms-blob-content-type": "text/html",
        "x-ms-blob-content-disposition": "inline"})
    assert response.status_code == 201
    # Names that would climb out of the set's folder or collapse into another path (Azurite stores them as sent).
    unsafe = {"a//b.png": "a//b.png", "x/%2E/y.png": "x/./y.png", "x/%2E%2E/y.png": "x/../y.png",
              "%2E%2E/z.png": "../z.png"}
    for sent in unsafe:
        assert put(image_set["dropbox_url"], sent, images.png(seed=14)).status_code == 201

    done = finish(client, admin, image_set["imageset_id"])
    assert done["status"] == "finished", done["error"]
    assert done["progress"] == {"total": 12, "done": 12, "accepted": 6, "duplicates": 1, "rejected": 5, "failed": 0}
    outcome = report(client, admin, image_set["imageset_id"])
    assert "not a recognised image" in outcome["notes.jpg"]["reason"]
    for name in unsafe.values():
        assert outcome[name]["reason"].startswith("unsafe file name"), outcome[name]

    def metadata(name):
        return client.get(f"/api/v1/images/{outcome[name]['image_id']}/metadata", headers=admin)

    assert metadata("nul-make.jpg").json()["exif"]["Make"] == "Canon"
    assert metadata("far-future.jpg").json()["date_taken"].startswith("9999-12-31")
    gps = metadata("gps-nan.jpg")
    assert "NaN" not in gps.text and gps.json()["location_taken"]["lat"] is None
    assert metadata("long-md5.png").json()["md5"] == hashlib.md5(files["long-md5.png"]).hexdigest()

    # Served as the image it is, whatever headers the uploader stored: the read URL pins the content type.
    served = httpx.get(client.get(f"/api/v1/images/{outcome['page.jpg']['image_id']}/url", headers=admin)
                       .json()["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.content == html_tail

    # Only the accepted files' copies are in the image container: the duplicate's and the rejected one's are gone.
    accepted = {f"imagesets/hostile/{name}" for name, f in outcome.items() if f["outcome"] == "accepted"}
    assert stored_paths(flask_app, "hostile") == accepted


def test_a_forged_content_md5_neither_hides_nor_steals_an_image(client, admin, make_image_set, start_worker):
    start_worker()
    photo, black = images.jpeg(seed=21, width=96, height=64), images.jpeg(seed=0, color=(0, 0, 0))
    attacker = make_image_set("attacker")
    put(attacker["dropbox_url"], "black.jpg", black)
    set_content_md5(attacker["dropbox_url"], "black.jpg", hashlib.md5(photo).digest())
    finish(client, admin, attacker["imageset_id"])
    stored = report(client, admin, attacker["imageset_id"])["black.jpg"]
    forged = client.get(f"/api/v1/images/{stored['image_id']}/metadata", headers=admin).json()
    assert forged["md5"] == hashlib.md5(black).hexdigest()  # catalogued under its own bytes' MD5

    owner = make_image_set("owner")
    put(owner["dropbox_url"], "photo.jpg", photo)
    finish(client, admin, owner["imageset_id"])
    real = report(client, admin, owner["imageset_id"])["photo.jpg"]
    assert real["outcome"] == "accepted" and real["image_id"] != stored["image_id"]
    served = client.get(f"/api/v1/images/{real['image_id']}", headers=admin, follow_redirects=False)
    assert httpx.get(served.headers["location"]).content == photo


def test_a_name_storage_cannot_list_fails_the_set_at_once_with_what_to_do(client, admin, make_image_set,
                                                                         start_worker):
    start_worker(azure_storage_retries=0)  # Azurite answers such a listing with a 500, which the SDK would retry
    image_set = make_image_set("unlistable")
    put(image_set["dropbox_url"], "good.png", images.png(seed=31))
    put(image_set["dropbox_url"], "bell%07.png", images.png(seed=32))  # "bell\a.png": Azurite cannot list it
    done = finish(client, admin, image_set["imageset_id"], timeout=30)  # no eight attempts with backoff
    assert done["status"] == "failed"
    assert "cannot list upload area" in done["error"] and "control characters" in done["error"]
