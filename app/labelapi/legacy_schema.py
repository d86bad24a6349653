"""LabelAPI's database as its migrations leave it (8c4eddde7535 .. 413212592e9b), without the optional PostGIS
`geopoint` column: what `import-labelapi` reads. Kept here so the tests and the bench build the same source."""
from __future__ import annotations

from psycopg import sql

DDL = """
CREATE TYPE campaign_status AS ENUM ('created', 'active', 'completed', 'finished');
CREATE TYPE imageset_status AS ENUM ('created', 'finished');
CREATE TYPE role_types AS ENUM ('image-admin', 'labeler');
CREATE TABLE "user" (id serial PRIMARY KEY, email varchar(128) NOT NULL UNIQUE, "API_KEY" varchar(100),
                     "API_SECRET" bytea, public_key text UNIQUE, enabled boolean NOT NULL);
CREATE TABLE campaign (id serial PRIMARY KEY, title varchar(128) NOT NULL UNIQUE, metadata jsonb,
                       status campaign_status NOT NULL, label_translations jsonb,
                       date_created timestamp NOT NULL DEFAULT now(), date_started timestamp,
                       date_completed timestamp, date_finished timestamp,
                       created_by integer NOT NULL REFERENCES "user"(id));
CREATE TABLE imageset (id serial PRIMARY KEY, title varchar(128) NOT NULL UNIQUE, status imageset_status NOT NULL,
                       metadata jsonb, blobstorage_path varchar(1024) UNIQUE,
                       date_created timestamp NOT NULL DEFAULT now(), date_finished timestamp,
                       created_by integer NOT NULL REFERENCES "user"(id));
CREATE TABLE image (id serial PRIMARY KEY, blobstorage_path varchar(1024) NOT NULL UNIQUE,
                    imageset_id integer REFERENCES imageset(id), date_taken timestamp, type varchar(128),
                    metadata jsonb, tss_id varchar(128), filetype varchar(128), filesize integer, width integer,
                    height integer, date_added timestamp NOT NULL DEFAULT now(), lat float,
                    location_description varchar(1024), lon float);
CREATE TABLE roles (id serial PRIMARY KEY, role role_types NOT NULL, user_id integer NOT NULL REFERENCES "user"(id),
                    subject_id integer, subject_type varchar(128));
CREATE TABLE campaign_image (id serial PRIMARY KEY, campaign_id integer NOT NULL REFERENCES campaign(id),
                             image_id integer NOT NULL REFERENCES image(id), labeled boolean NOT NULL);
CREATE TABLE object (id serial PRIMARY KEY, campaign_image_id integer NOT NULL REFERENCES campaign_image(id),
                     label_translated varchar(128) NOT NULL, label_original varchar(128), confidence float,
                     date_added timestamp NOT NULL DEFAULT now(), x_min integer NOT NULL, x_max integer NOT NULL,
                     y_min integer NOT NULL, y_max integer NOT NULL);
"""


def create_labelapi_schema(conn, schema: str) -> None:
    """Create LabelAPI's tables and enums in `schema` (a psycopg connection; the caller commits)."""
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    conn.execute(DDL)
