"""Renditions (grayscale, thumbnail) and look-up by MD5: the image work itself, the job a worker runs after
finishing, and reading them through the API, against real PostgreSQL, Azurite and a worker process."""
from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from sqlalchemy import text

from app.ingest import renditions as render
from app.state import app_state
from tests import images
from tests.helpers import ROOT, assert_problem, env_for, finish, put, report, wait_until

MAX_PIXELS = 100_000_000
# Colours where Pillow's weighted "L" (0.299 R + 0.587 G + 0.114 B) and the plain mean disagree, and edges.
CHOSEN = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 254), (1, 1, 2), (0, 0, 0), (255, 255, 255),
          (10, 200, 3), (100, 0, 0), (2, 2, 1)]


def colour_png(width=23, height=17, seed=5) -> tuple[bytes, list[tuple[int, int, int]]]:
    rng = random.Random(seed)
    pixels = CHOSEN + [tuple(rng.randrange(256) for _ in range(3)) for _ in range(width * height - len(CHOSEN))]
    image = Image.new("RGB", (width, height))
    image.putdata(pixels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue(), pixels


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def sideways_jpeg() -> bytes:
    """400x200 stored, EXIF Orientation 6 (shown turned 90 degrees clockwise: 200x400): blue, with a red block in
    the stored top-left corner, which is the top-right corner of the upright picture."""
    image = Image.new("RGB", (400, 200), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 100, 50))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def near(pixel, colour, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


# --- the image work --------------------------------------------------------------------------------

def test_grayscale_is_the_floor_of_the_plain_mean_of_every_pixel():
    data, pixels = colour_png()
    gray = decoded(render.grayscale(data, max_pixels=MAX_PIXELS))
    assert gray.format == "PNG" and gray.mode == "L" and gray.size == (23, 17)
    expected = [(r + g + b) // 3 for r, g, b in pixels]
    assert list(gray.get_flattened_data()) == expected
    weighted = list(Image.open(io.BytesIO(data)).convert("L").get_flattened_data())
    assert weighted[:3] == [76, 150, 29] and expected[:3] == [85, 85, 85]  # Pillow's "L" would be wrong here


@pytest.mark.parametrize("mode, fmt, expected", [
    ("RGBA", "PNG", (200 + 100 + 50) // 3),  # alpha dropped
    ("CMYK", "TIFF", (200 + 100 + 50) // 3),
    ("L", "PNG", 124),
    ("I;16", "PNG", 40000 // 256),  # 16-bit: the high byte, not clipped to 255
])
def test_grayscale_of_other_modes(mode, fmt, expected):
    if mode == "I;16":
        image = Image.new("I;16", (6, 4), 40000)
    elif mode == "L":
        image = Image.new("L", (6, 4), 124)
    else:
        image = Image.new("RGB", (6, 4), (200, 100, 50)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    gray = decoded(render.grayscale(buffer.getvalue(), max_pixels=MAX_PIXELS))
    assert set(gray.get_flattened_data()) == {expected}


def test_thumbnail_is_upright_and_its_longest_side_is_the_size():
    thumb = decoded(render.thumbnail(sideways_jpeg(), 256, max_pixels=MAX_PIXELS))
    assert thumb.format == "JPEG" and thumb.size == (128, 256)
    assert near(thumb.getpixel((120, 10)), (255, 0, 0))  # the red block is top right once upright
    assert near(thumb.getpixel((8, 10)), (0, 0, 255))
    assert near(thumb.getpixel((120, 240)), (0, 0, 255))
    gray = decoded(render.grayscale(sideways_jpeg(), max_pixels=MAX_PIXELS))
    assert gray.size == (200, 400) and abs(gray.getpixel((190, 10)) - 85) < 15  # upright too


def test_thumbnail_of_a_large_jpeg_and_never_enlarged():
    big = decoded(render.thumbnail(images.jpeg(2000, 1500), 256, max_pixels=MAX_PIXELS))
    assert big.size == (256, 192)
    small = decoded(render.thumbnail(images.png(100, 60), 256, max_pixels=MAX_PIXELS))
    assert small.size == (100, 60)
    assert decoded(render.thumbnail(images.jpeg(2000, 1500), 64, max_pixels=MAX_PIXELS)).size == (64, 48)


@pytest.mark.parametrize("data, reason", [
    (images.truncated(images.jpeg(400, 300)), "could not be decoded"),
    (images.text_as_jpeg(), "not a readable image"),
    (images.png(300, 200), "300x200 is more than 50,000 pixels"),
])
def test_what_cannot_be_rendered_says_why(data, reason):
    for make in (render.grayscale, render.thumbnail):
        with pytest.raises(render.Unrenderable, match=reason):
            make(data, max_pixels=50_000 if "pixels" in reason else MAX_PIXELS)


# --- made by a worker after finishing, read through the API -------------------------------------------

def fetch(url: str) -> httpx.Response:
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    return response


def test_finishing_makes_renditions_read_through_the_api(client, admin, image_set, start_worker):
    colour, pixels = colour_png()
    put(image_set["dropbox_url"], "colour.png", colour)
    put(image_set["dropbox_url"], "sideways.jpg", sideways_jpeg())
    start_worker()
    finish(client, admin, image_set["imageset_id"])
    files = report(client, admin, image_set["imageset_id"])
    colour_id, sideways_id = files["colour.png"]["image_id"], files["sideways.jpg"]["image_id"]
    for image_id in (colour_id, sideways_id):
        wait_until(lambda: client.get(f"/api/v1/images/{image_id}/metadata", headers=admin).json()["renditions"]
                   == ["grayscale", "thumbnail"], message=f"the renditions of image {image_id}")

    redirect = client.get(f"/api/v1/images/{colour_id}/grayscale", headers=admin, follow_redirects=False)
    assert redirect.status_code == 303
    assert parse_qs(urlsplit(redirect.headers["Location"]).query)["sp"] == ["r"]
    served = fetch(redirect.headers["Location"])
    assert served.headers["content-type"] == "image/png"
    assert list(decoded(served.content).get_flattened_data()) == [(r + g + b) // 3 for r, g, b in pixels]

    redirect = client.get(f"/api/v1/images/{sideways_id}/thumbnail", headers=admin, follow_redirects=False)
    assert redirect.status_code == 303
    served = fetch(redirect.headers["Location"])
    assert served.headers["content-type"] == "image/jpeg"
    thumb = decoded(served.content)
    assert thumb.size == (128, 256) and near(thumb.getpixel((120, 10)), (255, 0, 0))

    as_json = client.get(f"/api/v1/images/{sideways_id}/url?rendition=thumbnail", headers=admin)
    assert as_json.status_code == 200
    assert fetch(as_json.json()["url"]).content == served.content
    as_json = client.get(f"/api/v1/images/{colour_id}/url?rendition=grayscale", headers=admin).json()
    assert decoded(fetch(as_json["url"]).content).mode == "L"
    original = client.get(f"/api/v1/images/{colour_id}/url", headers=admin).json()  # without: the image itself
    assert fetch(original["url"]).content == colour

    listed = client.get("/api/v1/images?thumbnail_urls=true", headers=admin).json()["images"]
    assert {i["image_id"] for i in listed} == {colour_id, sideways_id}
    for image in listed:
        assert decoded(fetch(image["thumbnail_url"]).content).format == "JPEG"
    plain = client.get("/api/v1/images", headers=admin).json()["images"]
    assert all("thumbnail_url" not in i for i in plain)


@pytest.fixture
def storage(flask_app):
    return app_state(flask_app).storage


def catalogue(db, image_set, path: str, data: bytes | None, storage, **fields):
    from app.models import Image

    if data is not None:
        storage.upload_bytes(path, data)
    row = Image(imageset_id=image_set["imageset_id"], blobstorage_path=path,
                md5=hashlib.md5(data or path.encode()).hexdigest(), filetype="png", filesize=len(data or b""),
                width=23, height=17, **fields)
    db.session.add(row)
    db.session.commit()
    return row.id


def test_not_made_yet_is_404_naming_the_rendition(client, admin, stored_images):
    image_id = stored_images[0]
    for rendition in ("grayscale", "thumbnail"):
        body = assert_problem(client.get(f"/api/v1/images/{image_id}/{rendition}", headers=admin), 404)
        assert body["detail"] == f"the {rendition} of image {image_id} is not made yet"
        body = assert_problem(client.get(f"/api/v1/images/{image_id}/url?rendition={rendition}", headers=admin), 404)
        assert body["detail"] == f"the {rendition} of image {image_id} is not made yet"
    assert client.get(f"/api/v1/images/{image_id}/metadata", headers=admin).json()["renditions"] == []
    listed = client.get("/api/v1/images?thumbnail_urls=true&per_page=3", headers=admin).json()["images"]
    assert [i["thumbnail_url"] for i in listed] == [None, None, None]
    assert_problem(client.get("/api/v1/images/999999/thumbnail", headers=admin), 404)
    assert_problem(client.get(f"/api/v1/images/{image_id}/url?rendition=sepia", headers=admin), 400)


def test_an_image_that_cannot_be_rendered_is_skipped_and_the_batch_succeeds(app_context, image_set, storage,
                                                                           start_worker, flask_app):
    from app.extensions import db
    from app.services import renditions

    good = catalogue(db, image_set, "imagesets/r/good.png", colour_png()[0], storage)
    garbage = catalogue(db, image_set, "imagesets/r/garbage.png", b"\x89PNG\r\n\x1a\n" + b"x" * 200, storage)
    gone = catalogue(db, image_set, "imagesets/r/gone.png", None, storage)
    renditions.defer_for([good, garbage, gone])
    db.session.commit()
    start_worker()

    def job_status():
        with db.engine.connect() as conn:
            return conn.execute(text("SELECT status FROM procrastinate_jobs WHERE task_name = 'make_renditions'")
                                ).scalar_one()
    wait_until(lambda: job_status() in ("succeeded", "failed"), message="the renditions job")
    assert job_status() == "succeeded"
    with db.engine.connect() as conn:
        made = dict(conn.execute(text("SELECT id, renditions FROM images")).all())
    assert made == {good: ["grayscale", "thumbnail"], garbage: [], gone: []}


def test_overlapping_runs_lose_and_double_nothing(app_context, image_set, storage):
    from app.extensions import db
    from app.models import Image
    from app.services import renditions

    ids = [catalogue(db, image_set, f"imagesets/o/{i}.png", images.png(seed=i), storage) for i in range(6)]
    db.session.execute(text("UPDATE images SET renditions = '{thumbnail}' WHERE id = :id"), {"id": ids[0]})
    db.session.commit()
    app = app_context

    def run():
        with app.app_context():
            renditions.make(ids)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    renditions.make(ids)  # once more: nothing left to do, nothing changes
    db.session.expire_all()
    assert {i.id: i.renditions for i in db.session.query(Image)} == {i: ["grayscale", "thumbnail"] for i in ids}


def test_backfill_command_queues_jobs_for_images_without_renditions(app_context, stored_images, settings_overrides):
    from app.extensions import db

    db.session.execute(text("UPDATE images SET renditions = '{grayscale,thumbnail}' WHERE id = :id"),
                       {"id": stored_images[0]})
    db.session.commit()
    done = subprocess.run([sys.executable, "-m", "app", "renditions-backfill", "--batch-size", "4"], cwd=ROOT,
                          env=env_for(settings_overrides), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"images": 9, "jobs": 3}
    with db.engine.connect() as conn:
        queued = conn.execute(text("SELECT args FROM procrastinate_jobs WHERE task_name = 'make_renditions' "
                                   "ORDER BY id")).scalars().all()
    assert [job["image_ids"] for job in queued] == [stored_images[1:5], stored_images[5:9], stored_images[9:]]


# --- look-up by MD5 -------------------------------------------------------------------------------------

def test_look_up_by_md5(client, admin, app_context, image_set, storage):
    from app.extensions import db

    data = images.jpeg(seed=3)
    image_id = catalogue(db, image_set, "imagesets/m/photo.jpg", data, storage)
    md5 = hashlib.md5(data).hexdigest()
    for asked in (md5, md5.upper()):
        redirect = client.get(f"/api/v1/images/md5/{asked}", headers=admin, follow_redirects=False)
        assert redirect.status_code == 303
        assert fetch(redirect.headers["Location"]).content == data
        record = client.get(f"/api/v1/images/md5/{asked}/metadata", headers=admin)
        assert record.status_code == 200 and record.json()["image_id"] == image_id and record.json()["md5"] == md5
    unknown = "f" * 32
    assert assert_problem(client.get(f"/api/v1/images/md5/{unknown}", headers=admin), 404)["detail"] == (
        f"no image has MD5 {unknown}")
    assert_problem(client.get(f"/api/v1/images/md5/{unknown}/metadata", headers=admin), 404)
    assert_problem(client.get("/api/v1/images/md5/not-an-md5", headers=admin), 400)


def test_a_labeler_reads_renditions_of_its_campaigns_images_only(client, make_key, make_campaign, app_context,
                                                                   stored_images):
    from app.extensions import db

    db.session.execute(text("UPDATE images SET renditions = '{grayscale,thumbnail}'"))
    db.session.commit()
    mine, other = stored_images[0], stored_images[1]
    campaign = make_campaign([mine])
    labeler = make_key("labeler", campaign_ids=[campaign["campaign_id"]])
    for rendition in ("grayscale", "thumbnail"):
        assert client.get(f"/api/v1/images/{mine}/{rendition}", headers=labeler,
                          follow_redirects=False).status_code == 303
        assert client.get(f"/api/v1/images/{mine}/url?rendition={rendition}", headers=labeler).status_code == 200
        for path in (f"/api/v1/images/{other}/{rendition}", f"/api/v1/images/{other}/url?rendition={rendition}"):
            assert assert_problem(client.get(path, headers=labeler), 404)["detail"] == f"no image {other}"
    md5 = client.get(f"/api/v1/images/{mine}/metadata", headers=labeler).json()["md5"]
    assert_problem(client.get(f"/api/v1/images/md5/{md5}", headers=labeler), 403)
    assert_problem(client.get(f"/api/v1/images/md5/{md5}/metadata", headers=labeler), 403)
