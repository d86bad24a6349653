"""Copy a LabelAPI database (its schema as of its last migration, 413212592e9b) into this service.

Each LabelAPI table is streamed with COPY from the source into a temporary table of the target, then moved
into ours by one INSERT ... SELECT ... ON CONFLICT DO NOTHING per step, so memory stays flat whatever the
size, and a run repeated or cut anywhere and run again ends with every row exactly once. Ids are kept (image
sets, images, campaigns, objects) and our sequences continue after them. Each step commits on its own; with
`dry_run` all of them run in one transaction that is rolled back, so the counts are exactly what a real run
would do.

Secrets never pass through here in the clear: LabelAPI kept bcrypt hashes, which go to
api_keys.legacy_secret_hash as they are (app.auth swaps one for our HMAC at the key's first good request).
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

IMPORT_KEY_DESCRIPTION = "imported from LabelAPI"
FALLBACK_KEY_ID = "labelapi-import"  # key id on revisions of a labeler that had no key pair

# What is read from LabelAPI: (temporary table, its columns, the source query). Enums are read as text and
# naive timestamps (LabelAPI wrote UTC) as they are; the PostGIS geopoint is never read.
SOURCE_TABLES = (
    ("la_user", "id int, email text, api_key text, api_secret bytea, enabled bool",
     'SELECT id, email, "API_KEY", "API_SECRET", enabled FROM "user"'),
    ("la_roles", "user_id int, role text, subject_type text, subject_id int",
     "SELECT user_id, role::text, subject_type, subject_id FROM roles"),
    ("la_imageset", "id int, title text, status text, metadata jsonb, blobstorage_path text, date_created timestamp, "
                    "date_finished timestamp, created_by int",
     "SELECT id, title, status::text, metadata, blobstorage_path, date_created, date_finished, created_by "
     "FROM imageset"),
    ("la_image", "id int, blobstorage_path text, imageset_id int, date_taken timestamp, location_description text, "
                 "lat float8, lon float8, type text, metadata jsonb, tss_id text, filetype text, filesize bigint, "
                 "width int, height int, date_added timestamp",
     "SELECT id, blobstorage_path, imageset_id, date_taken, location_description, lat, lon, type, metadata, tss_id, "
     "filetype, filesize, width, height, date_added FROM image"),
    ("la_campaign", "id int, title text, metadata jsonb, status text, label_translations jsonb, "
                    "date_created timestamp, date_started timestamp, date_completed timestamp, "
                    "date_finished timestamp, created_by int",
     "SELECT id, title, metadata, status::text, label_translations, date_created, date_started, date_completed, "
     "date_finished, created_by FROM campaign"),
    ("la_campaign_image", "id int, campaign_id int, image_id int, labeled bool",
     "SELECT id, campaign_id, image_id, labeled FROM campaign_image"),
    ("la_object", "id int, campaign_image_id int, label_translated text, label_original text, confidence float8, "
                  "date_added timestamp, x_min int, x_max int, y_min int, y_max int",
     "SELECT id, campaign_image_id, label_translated, label_original, confidence, date_added, x_min, x_max, y_min, "
     "y_max FROM object"),
)


@dataclass
class Count:
    read: int = 0
    created: int = 0
    problems: int = 0

    @property
    def present(self) -> int:
        return self.read - self.created - self.problems


@dataclass
class Summary:
    counts: dict[str, Count] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one line each, shown after the counts
    pending_backfill: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.problems)

    def table(self, dry_run: bool) -> str:
        created = "would create" if dry_run else "created"
        lines = [f"{'':22}{'read':>10}{created:>14}{'already present':>17}{'problems':>10}"]
        lines += [f"{name:22}{c.read:>10,}{c.created:>14,}{c.present:>17,}{c.problems:>10,}"
                  for name, c in self.counts.items()]
        return "\n".join(lines)


class SourceProblem(Exception):
    """The source cannot be imported as it is (not LabelAPI's schema, blobs in another container)."""


class Progress:
    """A one-line progress display on a terminal; silent otherwise (logs and pipes get the summary only)."""

    def __init__(self, out: TextIO):
        self.out, self.on = out, out.isatty()
        self._last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.on and (force or now - self._last > 0.1):
            self.out.write(f"\r\x1b[2K{text}")
            self.out.flush()
            self._last = now

    def done(self) -> None:
        if self.on:
            self.out.write("\r\x1b[2K")
            self.out.flush()


def _libpq(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}"


def run_import(*, source_url: str, target_url: str, container: str, folder: str, schema: str | None = None,
               dry_run: bool = False, progress_out: TextIO = sys.stderr) -> Summary:
    """Import everything; the summary counts what was read, created, already there, and what could not be."""
    progress = Progress(progress_out)
    summary = Summary()
    with psycopg.connect(_libpq(source_url)) as source, psycopg.connect(_libpq(target_url)) as target:
        source.read_only = True
        if schema:
            source.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        _check_source(source)
        for name, columns, query in SOURCE_TABLES:
            _stage(source, target, name, columns, query, progress)
        source.commit()
        _check_container(target, container)
        steps = _steps(container, folder)
        for number, (label, statement, count_query, problem_query) in enumerate(steps, 1):
            progress.show(f"[{number}/{len(steps)}] {label}", force=True)
            started = time.monotonic()
            created = target.execute(statement).rowcount
            if count_query:  # an insert of rows read from LabelAPI (the others only bring our own rows up to date)
                count = summary.counts[label] = Count(read=target.execute(count_query).fetchone()[0],
                                                      created=max(created, 0))
                if problem_query:
                    found = [row[0] for row in target.execute(problem_query)]
                    count.problems = len(found)
                    summary.problems += [f"{label}: {line}" for line in found]
            if not dry_run:
                target.commit()
            logger.info("labelapi import step", extra={"step": label, "rows": created,
                                                        "seconds": round(time.monotonic() - started, 2)})
        _continue_sequences(target)
        summary.pending_backfill = target.execute(
            "SELECT count(*) FROM labelapi_images WHERE state = 'pending'").fetchone()[0]
        if dry_run:
            target.rollback()
        else:
            target.commit()
    progress.done()
    return summary


def _check_source(source: psycopg.Connection) -> None:
    wanted = {"user", "roles", "imageset", "image", "campaign", "campaign_image", "object"}
    found = {row[0] for row in source.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    if not wanted <= found:
        raise SourceProblem(f"not a LabelAPI database (schema {source.execute('SELECT current_schema()').fetchone()[0]}"
                            f" lacks {', '.join(sorted(wanted - found))}); give its schema with --schema")


def _stage(source, target, name: str, columns: str, query: str, progress: Progress) -> None:
    """Stream one source table into a temporary table of the target with COPY (constant memory)."""
    target.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({})").format(sql.Identifier(name), sql.SQL(columns)))
    target.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(name)))
    rows = 0
    with source.cursor().copy(sql.SQL("COPY ({}) TO STDOUT").format(sql.SQL(query))) as out, \
            target.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(name))) as into:
        for data in out:
            into.write(data)
            rows += bytes(data).count(b"\n")
            progress.show(f"reading {name.removeprefix('la_')}: {rows:,} rows")
    target.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))


def _check_container(target, container: str) -> None:
    """LabelAPI's paths start with its container; ours are inside AZURE_STORAGE_IMAGESET_CONTAINER. They must be
    the same container: blobs stay where they are."""
    others = target.execute(
        "SELECT split_part(ltrim(blobstorage_path, '/'), '/', 1) AS c, count(*) FROM la_image "
        "WHERE split_part(ltrim(blobstorage_path, '/'), '/', 1) <> %s GROUP BY 1 ORDER BY 2 DESC LIMIT 3",
        (container,)).fetchall()
    if others:
        listed = ", ".join(f"{c!r} ({n:,} images)" for c, n in others)
        raise SourceProblem(f"LabelAPI's images are in container {listed}, this service reads {container!r}: "
                            f"set AZURE_STORAGE_IMAGESET_CONTAINER to LabelAPI's container")


def _steps(container: str, folder: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """(label, the INSERT, how many rows it read, the rows it could not take: one text each)."""
    relative = f"substr(ltrim(%s, '/'), {len(container) + 2})"  # the path inside the container
    folder_literal = _literal(folder)
    utc = "{} AT TIME ZONE 'UTC'"
    # The campaign's labeler: the first user with a labeler role on it, else whoever created it.
    labeler = """(SELECT coalesce(
                     (SELECT r.user_id FROM la_roles r WHERE r.role = 'labeler' AND r.subject_type = 'campaign'
                      AND r.subject_id = c.id ORDER BY r.user_id LIMIT 1), c.created_by))"""
    return [
        ("users", """
            INSERT INTO principals (kind, name)
            SELECT DISTINCT 'user', lower(email) FROM la_user ON CONFLICT (name) DO NOTHING""",
         "SELECT count(DISTINCT lower(email)) FROM la_user", None),
        ("keys", f"""
            INSERT INTO api_keys (key_id, secret_hash, legacy_secret_hash, principal_id, roles, description,
                                  revoked_at)
            SELECT u.api_key, sha256(convert_to(gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')),
                   u.api_secret, p.id,
                   ARRAY(SELECT DISTINCT r.role FROM la_roles r WHERE r.user_id = u.id ORDER BY 1),
                   '{IMPORT_KEY_DESCRIPTION}', CASE WHEN u.enabled THEN NULL ELSE now() END
            FROM la_user u JOIN principals p ON p.name = lower(u.email)
            WHERE u.api_key IS NOT NULL AND u.api_secret IS NOT NULL
            ON CONFLICT (key_id) DO NOTHING""",
         "SELECT count(*) FROM la_user WHERE api_key IS NOT NULL AND api_secret IS NOT NULL",
         """SELECT 'key ' || u.api_key || ' exists here for ' || p.name || ', not ' || lower(u.email)
            FROM la_user u JOIN api_keys k ON k.key_id = u.api_key JOIN principals p ON p.id = k.principal_id
            WHERE p.name <> lower(u.email)"""),
        ("image sets", f"""
            INSERT INTO image_sets (id, title, status, metadata, blobstorage_path, upload_container, date_created,
                                    date_finished, created_by_id, progress_accepted, progress_duplicates,
                                    progress_rejected)
            SELECT s.id, s.title, s.status, s.metadata,
                   CASE WHEN s.status = 'finished' AND s.blobstorage_path IS NOT NULL
                        THEN rtrim({relative % 's.blobstorage_path'}, '/')
                        ELSE {folder_literal} || '/' || s.title END,
                   -- a set still being filled keeps its LabelAPI dropbox (a container); a finished one has none
                   CASE WHEN s.status = 'created' AND s.blobstorage_path IS NOT NULL
                        THEN left(s.blobstorage_path, 63) ELSE 'labelapi-set-' || s.id END,
                   {utc.format('s.date_created')}, {utc.format('s.date_finished')}, p.id, 0, 0, 0
            FROM la_imageset s LEFT JOIN la_user u ON u.id = s.created_by LEFT JOIN principals p ON p.name = lower(u.email)
            ON CONFLICT DO NOTHING""",
         "SELECT count(*) FROM la_imageset",
         """SELECT 'image set ' || s.id || ' (' || s.title || '): the id or title is taken here'
            FROM la_imageset s LEFT JOIN image_sets t ON t.id = s.id
            WHERE t.id IS NULL OR t.title <> s.title"""),
        ("images", f"""
            INSERT INTO images (id, imageset_id, blobstorage_path, md5, type, metadata, tss_id, filetype, filesize,
                                width, height, date_taken, location_description, lat, lon, date_added)
            SELECT i.id, i.imageset_id, {relative % 'i.blobstorage_path'}, NULL, left(i.type, 64), i.metadata,
                   left(i.tss_id, 64), left(lower(i.filetype), 16), i.filesize, i.width, i.height,
                   {utc.format('i.date_taken')}, i.location_description,
                   CASE WHEN i.lat BETWEEN -90 AND 90 THEN i.lat END,  -- NaN and nonsense arrive as unknown
                   CASE WHEN i.lon BETWEEN -180 AND 180 THEN i.lon END, {utc.format('i.date_added')}
            FROM la_image i
            ON CONFLICT DO NOTHING""",
         "SELECT count(*) FROM la_image",
         f"""SELECT 'image ' || i.id || ' (' || i.blobstorage_path || '): the id or path is taken here'
             FROM la_image i LEFT JOIN images t ON t.id = i.id
             WHERE t.id IS NULL OR t.blobstorage_path <> {relative % 'i.blobstorage_path'}"""),
        ("image set members", """
            INSERT INTO image_set_members (imageset_id, image_id)
            SELECT i.imageset_id, i.id FROM la_image i JOIN images t ON t.id = i.id AND t.imageset_id = i.imageset_id
            ON CONFLICT DO NOTHING""",
         "SELECT count(*) FROM la_image WHERE imageset_id IS NOT NULL", None),
        ("images to backfill", f"""
            INSERT INTO labelapi_images (image_id)
            SELECT i.id FROM la_image i JOIN images t ON t.id = i.id
                                                   AND t.blobstorage_path = {relative % 'i.blobstorage_path'}
            ON CONFLICT DO NOTHING""", None, None),
        ("campaigns", f"""
            INSERT INTO campaigns (id, title, status, metadata, label_translations, labeler_id, created_by_id,
                                   date_created, date_started, date_completed, date_finished, progress_total,
                                   progress_done)
            SELECT c.id, c.title, c.status, c.metadata, c.label_translations, lp.id, cp.id,
                   {utc.format('c.date_created')}, {utc.format('c.date_started')}, {utc.format('c.date_completed')},
                   {utc.format('c.date_finished')}, 0, 0
            FROM la_campaign c
            JOIN la_user lu ON lu.id = {labeler} JOIN principals lp ON lp.name = lower(lu.email)
            LEFT JOIN la_user cu ON cu.id = c.created_by LEFT JOIN principals cp ON cp.name = lower(cu.email)
            ON CONFLICT DO NOTHING""",
         "SELECT count(*) FROM la_campaign",
         """SELECT 'campaign ' || c.id || ' (' || c.title || '): the id or title is taken here'
            FROM la_campaign c LEFT JOIN campaigns t ON t.id = c.id WHERE t.id IS NULL OR t.title <> c.title"""),
        ("labeler bindings", """
            INSERT INTO api_key_campaigns (api_key_id, campaign_id)
            SELECT DISTINCT k.id, r.subject_id FROM la_roles r JOIN la_user u ON u.id = r.user_id
            JOIN api_keys k ON k.key_id = u.api_key JOIN campaigns c ON c.id = r.subject_id
            WHERE r.role = 'labeler' AND r.subject_type = 'campaign'
            ON CONFLICT DO NOTHING""",
         """SELECT count(*) FROM (SELECT DISTINCT r.user_id, r.subject_id FROM la_roles r JOIN la_user u
            ON u.id = r.user_id WHERE r.role = 'labeler' AND r.subject_type = 'campaign' AND u.api_key IS NOT NULL
            AND u.api_secret IS NOT NULL) b""", None),
        ("campaign images", """
            INSERT INTO campaign_images (campaign_id, image_id)
            SELECT DISTINCT ci.campaign_id, ci.image_id FROM la_campaign_image ci
            JOIN campaigns c ON c.id = ci.campaign_id JOIN images i ON i.id = ci.image_id
            ON CONFLICT DO NOTHING""",
         "SELECT count(*) FROM (SELECT DISTINCT campaign_id, image_id FROM la_campaign_image) d", None),
        # One first revision per labelled image, by the campaign's labeler, dated when its objects were stored.
        ("label revisions", f"""
            INSERT INTO label_revisions (campaign_id, image_id, revision, submitted_by, key_id, object_count,
                                         date_submitted)
            SELECT ci.campaign_id, ci.image_id, 1, lp.name, coalesce(lu.api_key, '{FALLBACK_KEY_ID}'),
                   count(o.id) FILTER (WHERE o.x_min < o.x_max AND o.y_min < o.y_max
                                       AND (o.confidence IS NULL OR o.confidence BETWEEN 0 AND 1)),
                   coalesce(max({utc.format('o.date_added')}), {utc.format('c.date_completed')},
                            {utc.format('c.date_created')})
            FROM la_campaign_image ci JOIN la_campaign c ON c.id = ci.campaign_id
            JOIN campaign_images t ON t.campaign_id = ci.campaign_id AND t.image_id = ci.image_id
            JOIN la_user lu ON lu.id = {labeler}
            JOIN principals lp ON lp.name = lower(lu.email)
            LEFT JOIN la_object o ON o.campaign_image_id = ci.id
            WHERE ci.labeled OR o.id IS NOT NULL
            GROUP BY ci.campaign_id, ci.image_id, lp.name, lu.api_key, c.date_completed, c.date_created
            ON CONFLICT ON CONSTRAINT uq_label_revisions_revision DO NOTHING""",
         """SELECT count(*) FROM (SELECT DISTINCT ci.campaign_id, ci.image_id FROM la_campaign_image ci
            WHERE ci.labeled OR EXISTS (SELECT 1 FROM la_object o WHERE o.campaign_image_id = ci.id)) d""", None),
        ("objects", f"""
            INSERT INTO objects (id, revision_id, campaign_id, image_id, label, label_original, box_xmin, box_xmax,
                                 box_ymin, box_ymax, confidence, is_crowd, date_added, added_by)
            SELECT o.id, r.id, ci.campaign_id, ci.image_id, o.label_translated,
                   coalesce(o.label_original, o.label_translated), o.x_min, o.x_max, o.y_min, o.y_max, o.confidence,
                   false, {utc.format('o.date_added')}, r.submitted_by
            FROM la_object o JOIN la_campaign_image ci ON ci.id = o.campaign_image_id
            JOIN label_revisions r ON r.campaign_id = ci.campaign_id AND r.image_id = ci.image_id AND r.revision = 1
            WHERE o.x_min < o.x_max AND o.y_min < o.y_max AND (o.confidence IS NULL OR o.confidence BETWEEN 0 AND 1)
            ON CONFLICT DO NOTHING""",
         "SELECT count(*) FROM la_object",
         """SELECT 'object ' || o.id || ': ' || CASE WHEN NOT (o.x_min < o.x_max AND o.y_min < o.y_max)
                THEN 'empty bounding box ' || o.x_min || '..' || o.x_max || ' x ' || o.y_min || '..' || o.y_max
                WHEN NOT (o.confidence IS NULL OR o.confidence BETWEEN 0 AND 1) THEN 'confidence ' || o.confidence
                ELSE 'its image or campaign was not imported' END
            FROM la_object o LEFT JOIN objects t ON t.id = o.id WHERE t.id IS NULL"""),
        ("current revisions", """
            UPDATE campaign_images t SET current_revision_id = r.id
            FROM label_revisions r, la_campaign_image ci
            WHERE r.campaign_id = t.campaign_id AND r.image_id = t.image_id AND r.revision = 1
              AND ci.campaign_id = t.campaign_id AND ci.image_id = t.image_id AND t.current_revision_id IS NULL""",
         None, None),
        ("campaign progress", """
            UPDATE campaigns c SET progress_total = p.total, progress_done = p.done
            FROM (SELECT campaign_id, count(*) AS total, count(current_revision_id) AS done FROM campaign_images
                  WHERE campaign_id IN (SELECT id FROM la_campaign) GROUP BY campaign_id) p
            WHERE p.campaign_id = c.id AND (c.progress_total, c.progress_done) IS DISTINCT FROM (p.total, p.done)""",
         None, None),
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _continue_sequences(target) -> None:
    """Our sequences continue after the ids kept (never moving back)."""
    for table in ("image_sets", "images", "campaigns", "objects"):
        sequence = target.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()[0]
        highest = target.execute(sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        last, called = target.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
            sql.SQL(sequence))).fetchone()
        if highest is not None and highest > (last if called else last - 1):
            target.execute("SELECT setval(%s, %s)", (sequence, highest))
