"""Finishing throughput: images/second of finishing.finish against the storage floor and LabelAPI's way.

Three sets of N distinct small PNGs (64x48) in three upload areas of one Azurite, same run:
  floor     the same BlobStorage client, per blob one server-side copy into a scratch folder and one read of
            every byte of that copy (the least that computes the MD5 from the stored bytes, as finishing
            must), on a pool of settings.finish_concurrency threads; no database
            (the listing is done before the clock starts, so this floor is strict); run before and after
            ours, and the mean taken, so drift during the run does not favour either side;
  ours      finishing.finish(imageset_id) on a real image set, from start to status finished;
  LabelAPI  per blob, sequentially: a full download (download_blob().readall()) then a server-side copy.
Uploads (as azcopy --put-md5 does: Content-Type by extension and Content-MD5) are not timed. Prints images/second and the ratios ours/floor (goal >= 0.7) and ours/LabelAPI.
Run: .venv/bin/python bench/finishing_throughput.py [--count 1000] [--profile]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import images  # noqa: E402


class Discarded(logging.Filter):
    """Counts (and hides) urllib3's "Connection pool is full" warnings: the SDK's pool is smaller than our pool."""
    count = 0

    def filter(self, record):
        if not record.getMessage().startswith("Connection pool is full"):
            return True
        Discarded.count += 1
        return False


def upload(storage, container: str, seeds: range) -> None:
    """Plain HTTP PUTs to the area's SAS URL, as a client would; not timed."""
    import httpx

    base, _, sas = storage.upload_area_url(container, timedelta(hours=1)).url.partition("?")
    files = {f"img_{seed:06d}.png": images.png(seed=seed, width=64, height=48) for seed in seeds}
    with httpx.Client(limits=httpx.Limits(max_connections=16)) as client, ThreadPoolExecutor(16) as pool:
        def put(item):
            # As azcopy --put-md5 and Storage Explorer upload: Content-Type by extension, and the Content-MD5.
            response = client.put(f"{base}/{item[0]}?{sas}", content=item[1], headers={
                "x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": "image/png",
                "x-ms-blob-content-md5": base64.b64encode(hashlib.md5(item[1]).digest()).decode()})
            assert response.status_code == 201, (item[0], response.status_code, response.text)
        list(pool.map(put, files.items()))


def floor(storage, container: str, concurrency: int, scratch: str) -> tuple[float, int]:
    blobs = list(storage.list_upload_area(container))

    def one(blob):
        storage.copy_into_images(container, blob.name, f"{scratch}/{blob.name}")
        storage.container_client.get_blob_client(f"{scratch}/{blob.name}").download_blob().readall()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, blobs))
    return time.perf_counter() - started, len(blobs)


def labelapi(storage, container: str) -> tuple[float, int]:
    blobs = list(storage.list_upload_area(container))
    started = time.perf_counter()
    for blob in blobs:
        storage.service.get_blob_client(container, blob.name).download_blob().readall()
        storage.copy_into_images(container, blob.name, f"bench-labelapi/{blob.name}")
    return time.perf_counter() - started, len(blobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="images per run (default 1000)")
    parser.add_argument("--profile", action="store_true", help="cProfile finish() and print the top entries")
    args = parser.parse_args()
    n = args.count

    from app.factory import create_app
    from app.auth.policy import Caller
    from app.migrate import migrate_database
    from app.embedded.azurite import Azurite
    from app.embedded.postgres import EmbeddedPostgres
    from app.extensions import db
    from app.services import finishing, image_sets
    from app.services.keys import create_key
    from app.settings import load

    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast=True).start()
        azurite = Azurite(Path(tmp) / "azurite").start()
        try:
            settings = load(db_connection_string=pg.create_database("bench"),
                            azure_storage_connection_string=azurite.connection_string,
                            api_key_pepper="bench-pepper-0123456789", log_level="WARNING")
            connexion_app = create_app(settings)
            migrate_database(connexion_app.app)
            logging.getLogger("urllib3.connectionpool").addFilter(Discarded())
            with connexion_app.app.app_context():
                storage = connexion_app.app.extensions["label_store"].storage
                key, _ = create_key(roles=["admin"], email="bench@example.org")
                caller = Caller(id=key.id, key_id=key.key_id, principal_id=key.principal_id, owner_kind="user",
                                owner_name="bench@example.org", roles=frozenset({"admin"}))
                image_set, _ = image_sets.create(title="bench throughput", metadata=None, created_by=caller)
                imageset_id, ours_area = image_set.id, image_set.upload_container
                floor_area, labelapi_area = "bench-floor-area", "bench-labelapi-area"
                for area in (floor_area, labelapi_area):
                    storage.create_upload_area(area)
                upload(storage, floor_area, range(n))
                upload(storage, ours_area, range(100_000, 100_000 + n))
                upload(storage, labelapi_area, range(200_000, 200_000 + n))
                assert all(b.content_settings.content_md5 for b in storage.service.get_container_client(
                    ours_area).list_blobs()), "no Content-MD5 stored by Azurite"

                Discarded.count = 0
                floor_1, floor_n = floor(storage, floor_area, settings.finish_concurrency, "bench-floor-1")
                discarded = {"floor": Discarded.count}

                image_set.status = "finishing"
                db.session.commit()
                started = time.perf_counter()
                if args.profile:
                    import cProfile
                    import pstats

                    profiler = cProfile.Profile()
                    profiler.runcall(finishing.finish, imageset_id)
                else:
                    finishing.finish(imageset_id)
                ours_t = time.perf_counter() - started
                discarded["ours"] = Discarded.count - discarded["floor"]
                db.session.expire_all()
                finished = image_sets.get(imageset_id)
                assert finished.status == "finished", finished.status
                assert image_sets.progress(finished)["accepted"] == n, image_sets.progress(finished)

                floor_2, _ = floor(storage, floor_area, settings.finish_concurrency, "bench-floor-2")
                floor_t = (floor_1 + floor_2) / 2
                labelapi_t, labelapi_n = labelapi(storage, labelapi_area)
        finally:
            azurite.stop()
            pg.stop()

    assert floor_n == labelapi_n == n, (floor_n, labelapi_n)
    floor_r, ours_r, labelapi_r = n / floor_t, n / ours_t, n / labelapi_t
    print(f"{n} images of 64x48 PNG, finish_concurrency={settings.finish_concurrency}, "
          f"finish_batch_size={settings.finish_batch_size}")
    print(f"{f'floor (copy + full read, {settings.finish_concurrency} threads)':44} {floor_r:7.1f} images/s ({floor_t:6.2f} s)  baseline, "
          f"mean of runs before ({floor_1:.2f} s) and after ({floor_2:.2f} s) ours")
    print(f"{'ours (finishing.finish)':44} {ours_r:7.1f} images/s ({ours_t:6.2f} s)  "
          f"ours/floor {ours_r / floor_r:4.2f} (goal >= 0.7)")
    print(f"{'LabelAPI (sequential full download + copy)':44} {labelapi_r:7.1f} images/s ({labelapi_t:6.2f} s)  "
          f"ours/LabelAPI {ours_r / labelapi_r:4.2f}")
    print(f"HTTP connections discarded by the SDK's urllib3 pool (10 per host): first floor {discarded['floor']}, "
          f"ours {discarded['ours']}")
    if args.profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
