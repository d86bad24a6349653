"""`python -m app import-labelapi`: the import, its summary, and the backfill job queued after it."""
from __future__ import annotations

import sys
from typing import TextIO

import psycopg

from app.extensions import db
from app.labelapi import backfill
from app.labelapi.importer import SourceProblem, run_import
from app.state import app_state
from app.unit_of_work import unit_of_work

MAX_PROBLEMS_SHOWN = 50


def import_labelapi(flask_app, *, source: str, schema: str | None, dry_run: bool, out: TextIO = sys.stdout,
                    err: TextIO = sys.stderr) -> int:
    """0 when everything was imported (or already was), 1 when anything could not be, 2 when nothing could."""
    with flask_app.app_context():
        settings = app_state().settings
        try:
            summary = run_import(source_url=source, target_url=db.engine.url.render_as_string(hide_password=False),
                                 container=settings.azure_storage_imageset_container,
                                 folder=settings.azure_storage_imageset_folder, schema=schema, dry_run=dry_run,
                                 progress_out=err)
        except SourceProblem as problem:
            print(f"label-store: {problem}", file=err)
            return 2
        except psycopg.OperationalError as exc:  # libpq's message names host and database, never the password
            print(f"label-store: cannot read the LabelAPI database: {str(exc).strip().splitlines()[0]}", file=err)
            return 2
        print(summary.table(dry_run), file=out)
        for line in summary.problems[:MAX_PROBLEMS_SHOWN]:
            print(f"  problem: {line}", file=out)
        if len(summary.problems) > MAX_PROBLEMS_SHOWN:
            print(f"  ... and {len(summary.problems) - MAX_PROBLEMS_SHOWN:,} more problems", file=out)
        if dry_run:
            print("dry run: nothing was changed", file=out)
        else:
            if summary.pending_backfill:
                with unit_of_work():
                    backfill.defer()
            states = backfill.counts()
            print("backfill of MD5, dimensions and sizes (a background job; `python -m app worker` runs it): "
                  + ", ".join(f"{state} {n:,}" for state, n in states.items()), file=out)
        return 1 if summary.failed else 0
