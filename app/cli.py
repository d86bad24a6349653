"""Command line (click): `python -m app {run,migrate,worker,create-admin,check-settings,import-labelapi,
renditions-backfill}`.

Each command loads the settings (one line and exit status 2 when they are wrong), configures logging,
then hands over to the room that does the work: app.supervisor, app.migrate, app.jobs.worker. Workers and
commands run on the Flask app without the HTTP API (app.flask_app): a worker starts without loading Connexion.
"""
from __future__ import annotations

import json
import logging
import sys

import click

from app import logs
from app.flask_app import create_flask_app
from app.jobs import worker as job_worker
from app.labelapi.command import import_labelapi as run_import
from app.migrate import migrate_database, wait_for_database
from app.services import renditions
from app.services.keys import create_key
from app.settings import Settings, load_or_exit
from app.supervisor import run as supervise
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)


def _settings(*, need_servers: bool = True) -> Settings:
    settings = load_or_exit(need_servers=need_servers)
    logs.configure(settings.log_level, settings.log_format)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Label Store: labelled training images on Azure."""


@cli.command()
def run() -> None:
    """Start embedded services (when not configured), the API and a worker; Ctrl-C stops all."""
    sys.exit(supervise(_settings(need_servers=False)))


@cli.command()
def migrate() -> None:
    """Apply database migrations, create the image container and the bootstrap admin if configured."""
    settings = _settings()
    problem = wait_for_database(settings.db_libpq_url, settings.migrate_wait_seconds)
    if problem:
        click.echo(f"label-store: database unreachable after {settings.migrate_wait_seconds:g} s "
                   f"(MIGRATE_WAIT_SECONDS): {problem}", err=True)
        sys.exit(1)
    migrate_database(create_flask_app(settings))
    logger.info("database at head")


@cli.command()
def worker() -> None:
    """Run a background job worker until SIGTERM or Ctrl-C."""
    settings = _settings()
    job_worker.run(settings, create_flask_app(settings))


@cli.command("create-admin")
@click.option("--email", required=True, help="Who holds the key.")
def create_admin(email: str) -> None:
    """Create an admin key and print its pair once, as JSON."""
    with create_flask_app(_settings()).app_context():
        with unit_of_work():
            key, secret = create_key(roles=["admin"], email=email, description="created with python -m app create-admin")
        pair = {"apikey": key.key_id, "apisecret": secret, "email": email}
    click.echo(json.dumps(pair))


@cli.command("check-settings")
def check_settings() -> None:
    """Validate the settings and exit."""
    _settings(need_servers=False)
    click.echo("settings OK")


@cli.command("import-labelapi")
@click.option("--source", required=True, help="The LabelAPI database: postgresql://user:pass@host/db")
@click.option("--schema", default=None, help="Its schema (LabelAPI's DB_SCHEMA), when not the default one.")
@click.option("--dry-run", is_flag=True, help="Count what would be imported; change nothing.")
def import_labelapi(source: str, schema: str | None, dry_run: bool) -> None:
    """Copy a LabelAPI database here: keys, image sets, images, campaigns and labels, ids kept."""
    settings = _settings()
    sys.exit(run_import(create_flask_app(settings), source=source, schema=schema, dry_run=dry_run))


@cli.command("renditions-backfill")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 5000),
              help="Images per job.")
def renditions_backfill(batch_size: int) -> None:
    """Queue jobs making the renditions of every image that lacks one (workers make them)."""
    with create_flask_app(_settings()).app_context():
        images, deferred = renditions.backfill(batch_size)
    click.echo(json.dumps({"images": images, "jobs": deferred}))


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="python -m app", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as problem:
        problem.show()
        return problem.exit_code
    except click.Abort:
        return 1
    return 0
