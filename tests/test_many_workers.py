"""Many workers, one set: a set's finishing is split into chunks (one listing page each) that any worker takes.
Three real worker processes share one set; one of them is killed mid-way; a file lands in a chunk's range after
the chunk was listed. Whatever happens: exact counts, every file recorded once, no blob lost, no orphan copy."""
from __future__ import annotations

import os
import re
import signal

from sqlalchemy import select, text

from app.state import app_state
from tests import images
from tests.helpers import report, upload_all, wait_until

# 300 files make 12 chunks of 25; small batches make many transactions, so workers interleave.
CHUNKED = {"finish_chunk_size": 25, "finish_batch_size": 5, "finish_concurrency": 2, "worker_concurrency": 2}
PAIRS = (3, 40, 77, 120, 161, 199, 230, 262)  # originals in every part of the listing; their copies near its end


def _files() -> dict[str, bytes]:
    """280 distinct PNGs, 8 byte-for-byte copies of some of them (named so they fall in other chunks than
    their originals) and 12 files that are not images: 300 files."""
    files = {f"batch/{i:04d}.png": images.png(seed=i, width=16, height=16) for i in range(280)}
    files.update({f"copy/{i:04d}.png": files[f"batch/{i:04d}.png"] for i in PAIRS})
    files.update({f"junk/{i:02d}.png": f"not an image {i}".encode() for i in range(12)})
    return files


def _set(client, admin, imageset_id) -> dict:
    return client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()


def _finished(client, admin, imageset_id, timeout=75) -> dict:
    return wait_until(lambda: (lambda s: s if s["status"] in ("finished", "failed") else None)(
        _set(client, admin, imageset_id)), timeout=timeout, message="finishing to end")


def _assert_finished_exactly(client, admin, flask_app, image_set, files: dict[str, bytes]) -> None:
    """Exact counts; each file has one report row with the right outcome; every image's blob stored and no
    other blob under the set's folder; all chunks done; the upload area gone."""
    from app.extensions import db
    from app.models import FinishChunk, FinishReport, Image

    imageset_id = image_set["imageset_id"]
    done = _finished(client, admin, imageset_id)
    assert done["status"] == "finished", done
    distinct = len({data for name, data in files.items() if not name.startswith("junk/")})
    junk = sum(name.startswith("junk/") for name in files)
    assert done["progress"] == {"total": len(files), "done": len(files), "accepted": distinct,
                                "duplicates": len(files) - distinct - junk, "rejected": junk, "failed": 0}

    with flask_app.app_context():
        rows = db.session.execute(select(FinishReport.name, FinishReport.outcome, FinishReport.image_id).where(
            FinishReport.imageset_id == imageset_id)).all()
        chunks = db.session.execute(select(FinishChunk.done, FinishChunk.files).where(
            FinishChunk.imageset_id == imageset_id)).all()
        paths = {path: md5 for path, md5 in db.session.execute(
            select(Image.blobstorage_path, Image.md5).where(Image.imageset_id == imageset_id))}
        db.session.rollback()
    assert sorted(name for name, _, _ in rows) == sorted(files)  # every file recorded, none twice
    outcome = report(client, admin, imageset_id)
    for i in PAIRS:  # whichever of the two was read first is the image, the other its duplicate
        pair = (outcome[f"batch/{i:04d}.png"], outcome[f"copy/{i:04d}.png"])
        assert sorted(f["outcome"] for f in pair) == ["accepted", "duplicate"], pair
        assert pair[0]["image_id"] == pair[1]["image_id"] is not None
    assert all(outcome[name]["outcome"] == "rejected" for name in files if name.startswith("junk/"))
    assert chunks and all(done for done, _ in chunks) and sum(n for _, n in chunks) == len(files)

    storage = app_state(flask_app).storage
    stored = {b.name: b for b in storage.container_client.list_blobs(name_starts_with=f"imagesets/{image_set['title']}/")}
    assert sorted(set(paths) - set(stored)) == []  # a catalogued image without its bytes is data lost
    assert sorted(set(stored) - set(paths)) == []  # a copy no image row names is an orphan
    assert len(paths) == distinct
    for path, md5 in paths.items():  # and the stored bytes are the catalogued ones
        assert bytes(stored[path].content_settings.content_md5).hex() == md5, path
    container = image_set["dropbox_url"].split("?")[0].rsplit("/", 1)[1]
    assert not storage.service.get_container_client(container).exists()


def _chunks_done_by(worker) -> list[int]:
    return [int(n) for n in re.findall(r"finishing chunk done .*?\bchunk=(\d+)", worker.output.read_text())]


def _pid_running(flask_app) -> int | None:
    from app.extensions import db

    with flask_app.app_context(), db.engine.connect() as conn:
        return conn.execute(text(
            "SELECT p.pid FROM procrastinate_jobs j JOIN worker_processes p USING (worker_id) WHERE j.status = 'doing' "
            "AND j.task_name IN ('finish_image_set', 'finish_chunk') ORDER BY j.task_name = 'finish_image_set' DESC "
            "LIMIT 1")).scalar()


def _ask_finishing(client, admin, imageset_id) -> None:
    moved = client.put(f"/api/v1/image_sets/{imageset_id}", json={"new_status": "finished"}, headers=admin)
    assert moved.status_code == 202, moved.text


def test_three_workers_share_one_set(client, admin, image_set, start_worker, flask_app):
    from app.extensions import db

    workers = [start_worker(capture_output=True, **CHUNKED) for _ in range(3)]  # they start while files upload
    files = _files()
    upload_all(image_set["dropbox_url"], files)
    _ask_finishing(client, admin, image_set["imageset_id"])

    _assert_finished_exactly(client, admin, flask_app, image_set, files)
    done_by = [_chunks_done_by(w) for w in workers]
    # Each chunk was completed once, and more than one worker completed chunks.
    assert sorted(c for chunks in done_by for c in chunks) == list(range(12)), done_by
    assert sum(1 for chunks in done_by if chunks) >= 2, done_by
    with flask_app.app_context(), db.engine.connect() as conn:
        jobs = conn.execute(text("SELECT status::text, count(*) FROM procrastinate_jobs WHERE task_name = "
                                 "'finish_chunk' AND args->>'imageset_id' = :id GROUP BY 1"),
                            {"id": str(image_set["imageset_id"])}).all()
    assert dict(jobs) == {"succeeded": 12}
    assert all(w.poll() is None for w in workers)


def test_a_worker_killed_mid_finishing_loses_and_doubles_nothing(client, admin, image_set, start_worker, flask_app):
    workers = [start_worker(capture_output=True, **CHUNKED) for _ in range(3)]
    files = _files()
    upload_all(image_set["dropbox_url"], files)
    imageset_id = image_set["imageset_id"]
    _ask_finishing(client, admin, imageset_id)
    wait_until(lambda: _set(client, admin, imageset_id)["progress"]["done"] >= 60, timeout=60,
               message="finishing to be under way")
    # One that is working on the set dies, holding a chunk: the one running the set's first job (the listing,
    # then chunks) while it runs, else one running a chunk's job.
    doomed_pid = wait_until(lambda: _pid_running(flask_app), timeout=30, message="a worker on the set to be known")
    doomed = next(w for w in workers if w.pid == doomed_pid)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    assert _set(client, admin, imageset_id)["status"] == "finishing"  # it died mid-way

    _assert_finished_exactly(client, admin, flask_app, image_set, files)


def test_a_file_added_inside_a_listed_chunk_is_finished_with_it(client, admin, image_set, flask_app, settings,
                                                                 monkeypatch):
    """The chunk's listing is read again when it is worked, so a file that arrived between two of its names
    since is checked and counted with it (the names it pushes onto the next page are followed there)."""
    from app.errors import WorkInterrupted
    from app.extensions import db
    from app.models import FinishChunk, ImageSet
    from app.services import finishing
    from tests.helpers import put

    monkeypatch.setattr(settings, "finish_chunk_size", 25)
    files = {f"batch/{i:04d}.png": images.png(seed=i, width=16, height=16) for i in range(100)}
    upload_all(image_set["dropbox_url"], files)
    imageset_id = image_set["imageset_id"]
    _ask_finishing(client, admin, imageset_id)  # its job waits: no worker runs in this test

    def listed() -> bool:  # stops the run once every chunk is recorded, before any file is read
        with flask_app.app_context():
            return db.session.get(ImageSet, imageset_id).progress_total is not None

    with flask_app.app_context():
        try:
            finishing.finish(imageset_id, should_stop=listed)
            raise AssertionError("finishing was not stopped after listing")
        except WorkInterrupted:
            pass
        chunks = db.session.execute(select(FinishChunk.chunk, FinishChunk.last_name, FinishChunk.done).where(
            FinishChunk.imageset_id == imageset_id).order_by(FinishChunk.chunk)).all()
        db.session.rollback()
    assert [(c, last, d) for c, last, d in chunks] == [(c, f"batch/{25 * c + 24:04d}.png", False) for c in range(4)]

    late = {"batch/0030a.png": images.png(seed=1000, width=16, height=16),  # between two names of chunk 1
            "batch/0010.png.copy": files["batch/0010.png"]}  # a copy, inside chunk 0
    for name, data in late.items():
        assert put(image_set["dropbox_url"], name, data).status_code == 201
    with flask_app.app_context():
        finishing.finish(imageset_id)

    outcome = report(client, admin, imageset_id)
    assert outcome["batch/0030a.png"]["outcome"] == "accepted"
    assert outcome["batch/0010.png.copy"]["outcome"] == "duplicate"
    assert outcome["batch/0010.png.copy"]["image_id"] == outcome["batch/0010.png"]["image_id"]
    done = _set(client, admin, imageset_id)
    assert done["status"] == "finished"
    assert done["progress"] == {"total": 102, "done": 102, "accepted": 101, "duplicates": 1, "rejected": 0,
                                "failed": 0}
