"""The `labelstore` command. Each subcommand has --help; --json prints results for scripts (one JSON document,
or JSON Lines for listings); progress bars go to stderr and only on a terminal; a failure exits 1 with the
problem's detail (and the request id) on stderr."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from tqdm import tqdm

from labelstore_client import models as m
from labelstore_client.client import Client
from labelstore_client.config import ENV, Credentials, config_path, resolve, save_profile
from labelstore_client.errors import LabelStoreError


class Group(click.Group):
    """Turns a LabelStoreError anywhere below into its text on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabelStoreError as exc:
            click.echo(f"labelstore: {exc}", err=True)
            ctx.exit(1)


class State:
    def __init__(self, url, key, secret, profile, as_json):
        self.options = {"url": url, "key": key, "secret": secret, "profile": profile}
        self.as_json = as_json
        self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(**self.options)
        return self._client


def json_option(command):
    """--json after the subcommand too (`labelstore sets show 3 --json`), as well as before it."""
    def remember(ctx, _param, value):
        if value:
            ctx.find_object(State).as_json = True
    return click.option("--json", "as_json", is_flag=True, expose_value=False, callback=remember,
                        help="Print JSON (JSON Lines for listings).")(command)


def emit(state: State, result, human=None) -> None:
    """One result: JSON, or the human form (`human(result)` lines, else key: value)."""
    if state.as_json:
        click.echo(json.dumps(m.as_dict(result) if isinstance(result, m.Model) else result, default=str))
    elif human:
        click.echo(human(result))
    else:
        data = m.as_dict(result) if isinstance(result, m.Model) else result
        for key, value in data.items():
            click.echo(f"{key}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


def emit_all(state: State, items, line) -> None:
    for item in items:
        click.echo(json.dumps(m.as_dict(item), default=str) if state.as_json else line(item))


def bar(**options) -> tqdm:
    """A progress bar on stderr, hidden when stderr is not a terminal."""
    return tqdm(file=sys.stderr, disable=not sys.stderr.isatty(), dynamic_ncols=True, **options)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", help="Service URL (else LABELSTORE_URL, else the profile).")
@click.option("--key", help="Key id (else LABELSTORE_KEY, else the profile).")
@click.option("--secret", help="Secret (else LABELSTORE_SECRET, else the profile). Prefer the variable.")
@click.option("--profile", help="Profile in the config file (default: LABELSTORE_PROFILE, else 'default').")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (JSON Lines for listings).")
@click.version_option(package_name="labelstore-client")
@click.pass_context
def cli(ctx, url, key, secret, profile, as_json):
    """Label Store from the command line: upload folders of images, label campaigns, export datasets."""
    ctx.obj = State(url, key, secret, profile, as_json)


def main() -> None:
    cli(prog_name="labelstore")


# --- login -------------------------------------------------------------------------------------------------

@cli.command()
@click.option("--url", "login_url", help="Service URL.")
@click.option("--key", "login_key", help="Key id.")
@click.option("--secret-stdin", is_flag=True, help="Read the secret from stdin instead of a hidden prompt.")
@json_option
@click.pass_obj
def login(state: State, login_url, login_key, secret_stdin):
    """Check a key pair against the service and save it as a profile (config file mode 0600)."""
    given = {name: state.options[name] or os.environ.get(variable) for name, variable in ENV.items()}
    url = login_url or given["url"] or click.prompt("Service URL")
    key = login_key or given["key"] or click.prompt("Key id")
    if secret_stdin:
        secret = sys.stdin.readline().strip()
    else:
        secret = given["secret"] or click.prompt("Secret", hide_input=True)
    credentials = Credentials(url.rstrip("/"), key, secret)
    with Client(credentials.url, credentials.key, credentials.secret) as client:
        me = client.me()
    path = save_profile(credentials, state.options["profile"] or "default")
    emit(state, {"key_id": me.key_id, "owner": me.owner.name if me.owner else None, "roles": me.roles,
                 "config": str(path)},
         lambda r: f"logged in as {r['owner']} ({', '.join(r['roles'])}); saved to {r['config']}")


@cli.command()
@json_option
@click.pass_obj
def whoami(state: State):
    """The calling key: owner, roles, scopes."""
    me = state.client.me()
    emit(state, me, lambda r: f"{r.owner.name} key {r.key_id} roles {', '.join(r.roles)}"
         + (f" campaigns {r.campaign_ids}" if r.campaign_ids else "")
         + (f" sets {r.imageset_ids}" if r.imageset_ids else ""))


# --- upload and import -------------------------------------------------------------------------------------

@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--title", help="Title of a new image set.")
@click.option("--set", "imageset_id", type=int, help="Upload into this set instead (resumes an interrupted upload).")
@click.option("--finish/--no-finish", default=True, show_default=True, help="Finish the set after uploading.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for finishing to end.")
@click.option("--concurrency", type=click.IntRange(1, 128), default=16, show_default=True)
@json_option
@click.pass_obj
def upload(state: State, directory, title, imageset_id, finish, wait, concurrency):
    """Upload every image file under DIRECTORY into an image set, then finish it and wait.

    Files already in the set's dropbox with the same size and MD5 are skipped, so running the same
    command again (with --set ID) after an interruption sends only what is missing."""
    if (title is None) == (imageset_id is None):
        raise click.UsageError("give --title for a new set or --set ID for an existing one")
    bars: dict[str, tqdm] = {}

    def progress(stage, done, total):
        if stage not in bars:
            for other in bars.values():
                other.close()
            bars[stage] = bar(desc="uploading" if stage == "upload" else "finishing", unit=" files", total=total)
        current = bars[stage]
        if total is not None and current.total != total:
            current.total = total
        current.update(done - current.n)

    def announce(image_set):
        click.echo(f"image set {image_set.imageset_id} ({image_set.title}); to resume: labelstore upload "
                   f"{directory} --set {image_set.imageset_id}", err=True)

    try:
        summary = state.client.upload_directory(directory, imageset_id, title=title, finish=finish, wait=wait,
                                                progress=progress, concurrency=concurrency, on_set=announce)
    finally:
        for current in bars.values():
            current.close()
    result = summary.image_set
    report = f"{state.client.url}{summary.report}"
    out = {"imageset_id": result.imageset_id, "title": result.title, "status": result.status, "files": summary.files,
           "uploaded": summary.uploaded, "skipped": summary.skipped, "bytes_uploaded": summary.bytes_uploaded,
           "refreshed_dropbox_url": summary.refreshed_dropbox_url, "already": summary.already,
           "progress": m.as_dict(result.progress) if result.progress else None, "error": result.error,
           "report": report}

    def human(r):
        lines = [f"image set {r['imageset_id']}: {r['files']} files, {r['uploaded']} uploaded, "
                 f"{r['skipped']} already there; status {r['status']}"]
        if summary.already:
            lines.insert(0, f"the set was {summary.already} already: no file was sent")
        if r["progress"] and r["status"] in ("finished", "failed"):
            p = r["progress"]
            lines.append(f"accepted {p['accepted']}, duplicates {p['duplicates']}, rejected {p['rejected']}, "
                         f"failed {p['failed']}")
        if r["error"]:
            lines.append(f"error: {r['error']}")
        lines.append(f"report: {r['report']} (labelstore sets report {r['imageset_id']})")
        return "\n".join(lines)
    emit(state, out, human)
    if result.status == "failed":
        sys.exit(1)


@cli.command("import-urls")
@click.argument("file", type=click.File("r"))
@click.option("--set", "imageset_id", type=int, required=True, help="The image set (status created).")
@click.option("--wait", is_flag=True, help="Wait until every URL is fetched.")
@json_option
@click.pass_obj
def import_urls(state: State, file, imageset_id, wait):
    """Import images from FILE, one URL per line (blank lines and # comments skipped); - reads stdin."""
    urls = [line.strip() for line in file if line.strip() and not line.lstrip().startswith("#")]
    if not urls:
        raise click.UsageError("no URLs in the file")
    created = state.client.create_import(imageset_id, urls)
    click.echo(f"import {created.import_id} of {len(urls)} URLs queued", err=True)
    if wait:
        with bar(desc="importing", unit=" urls", total=len(urls)) as progress:
            def step(current):
                if current.progress:
                    progress.update(current.progress.done - progress.n)
            created = state.client.wait_for_import(created.import_id, progress=step)
    emit(state, created)


# --- sets and images --------------------------------------------------------------------------------------

@cli.group(cls=Group)
def sets():
    """Image sets."""


@sets.command("list")
@json_option
@click.pass_obj
def sets_list(state: State):
    """Every image set."""
    emit_all(state, state.client.list_image_sets(),
             lambda s: f"{s.imageset_id}\t{s.status}\t{s.title}\t{s.progress.accepted if s.progress else ''}")


@sets.command("show")
@click.argument("imageset_id", type=int)
@json_option
@click.pass_obj
def sets_show(state: State, imageset_id):
    """One image set with its finishing progress."""
    emit(state, state.client.get_image_set(imageset_id))


@sets.command("report")
@click.argument("imageset_id", type=int)
@click.option("--outcome", type=click.Choice(["accepted", "duplicate", "rejected", "failed"]))
@json_option
@click.pass_obj
def sets_report(state: State, imageset_id, outcome):
    """What finishing made of each uploaded file."""
    emit_all(state, state.client.image_set_report(imageset_id, outcome),
             lambda f: f"{f.outcome}\t{f.image_id or ''}\t{f.name}" + (f"\t{f.reason}" if f.reason else ""))


@cli.group(cls=Group)
def images():
    """The image catalogue."""


@images.command("list")
@click.option("--set", "imageset_id", type=int, help="Images of this set.")
@click.option("--md5")
@click.option("--type", "type_")
@click.option("--taken-from", help="date_taken from (ISO 8601).")
@click.option("--taken-to", help="date_taken to (ISO 8601).")
@click.option("--camera-make")
@click.option("--camera-model")
@click.option("--limit", type=int, help="At most this many.")
@json_option
@click.pass_obj
def images_list(state: State, imageset_id, md5, type_, taken_from, taken_to, camera_make, camera_model, limit):
    """Images, filtered (paged with the API's cursor)."""
    found = state.client.list_images(imageset_id=imageset_id, md5=md5, type=type_, date_taken_from=taken_from,
                                     date_taken_to=taken_to, camera_make=camera_make, camera_model=camera_model,
                                     per_page=min(limit, 1000) if limit else 1000)
    if limit:
        found = (image for _, image in zip(range(limit), found))
    emit_all(state, found, lambda i: f"{i.image_id}\t{i.md5 or ''}\t{i.blobstorage_path}")


@images.command("show")
@click.argument("image_id", type=int)
@json_option
@click.pass_obj
def images_show(state: State, image_id):
    """One image's catalogue record."""
    emit(state, state.client.get_image(image_id))


@images.command("get")
@click.argument("image_id", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@json_option
@click.pass_obj
def images_get(state: State, image_id, output):
    """Download the image through its short-lived read URL."""
    size = state.client.download_image(image_id, output)
    emit(state, {"image_id": image_id, "path": str(output), "bytes": size},
         lambda r: f"{r['bytes']} bytes written to {r['path']}")


# --- campaigns and labels ---------------------------------------------------------------------------------

@cli.group(cls=Group)
def campaigns():
    """Labelling campaigns."""


def _campaign_line(c: m.Campaign) -> str:
    done = f"{c.progress.done}/{c.progress.total}" if c.progress else ""
    return f"{c.campaign_id}\t{c.status}\t{done}\t{c.title}"


@campaigns.command("list")
@json_option
@click.pass_obj
def campaigns_list(state: State):
    """Every campaign (a labeler sees its own)."""
    emit_all(state, state.client.list_campaigns(), _campaign_line)


@campaigns.command("create")
@click.option("--title", required=True)
@click.option("--labeler-email", required=True)
@click.option("--labels", help="The taxonomy, comma-separated.")
@json_option
@click.pass_obj
def campaigns_create(state: State, title, labeler_email, labels):
    """Create a campaign; prints the labeler's key pair (the secret only this once)."""
    created = state.client.create_campaign(title, labeler_email,
                                           labels=[x.strip() for x in labels.split(",")] if labels else None)
    token = created.access_token

    def human(c):
        secret = token.apisecret if token and token.apisecret else "(the labeler's existing secret)"
        return f"campaign {c.campaign_id} created; labeler key {token.apikey if token else ''} secret {secret}"
    emit(state, created, human)


@campaigns.command("show")
@click.argument("campaign_id", type=int)
@json_option
@click.pass_obj
def campaigns_show(state: State, campaign_id):
    """One campaign with its progress."""
    emit(state, state.client.get_campaign(campaign_id))


@campaigns.command("add-images")
@click.argument("campaign_id", type=int)
@click.argument("images", nargs=-1)
@click.option("--set", "imageset_id", type=int, help="Add every image of this set.")
@json_option
@click.pass_obj
def campaigns_add_images(state: State, campaign_id, images, imageset_id):
    """Add images by id or filepath (IMAGES), or every image of a set (--set)."""
    refs = [int(i) if i.isdigit() else i for i in images]
    if imageset_id:
        refs += [image.image_id for image in state.client.list_images(imageset_id=imageset_id)]
    if not refs:
        raise click.UsageError("give image ids or filepaths, or --set")
    added = sum(state.client.add_images_to_campaign(campaign_id, refs[i:i + 10000])
                for i in range(0, len(refs), 10000))
    emit(state, {"campaign_id": campaign_id, "added": added}, lambda r: f"{r['added']} images added")


@campaigns.command("status")
@click.argument("campaign_id", type=int)
@click.argument("new_status", required=False, type=click.Choice(["active", "completed", "finished"]))
@json_option
@click.pass_obj
def campaigns_status(state: State, campaign_id, new_status):
    """Show a campaign's status and progress, or move it to NEW_STATUS."""
    campaign = (state.client.change_campaign_status(campaign_id, new_status) if new_status
                else state.client.get_campaign(campaign_id))
    emit(state, campaign, _campaign_line)


@cli.group(cls=Group)
def labels():
    """Labels (objects) of a campaign."""


@labels.command("submit")
@click.option("--campaign", "campaign_id", type=int, required=True)
@click.argument("file", type=click.File("rb"))
@json_option
@click.pass_obj
def labels_submit(state: State, campaign_id, file):
    """Submit FILE: LabelAPI's body, [{"image_id": 1, "objects": [{"bounding_box": {...}, "label": "..."}]}]."""
    try:
        items = json.load(file)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="FILE") from None
    stored = state.client.submit_objects(campaign_id, items)
    emit(state, stored, lambda s: f"{s.objects} objects on {s.images} images stored; campaign {s.status}, "
                                  f"{s.progress.done}/{s.progress.total} labelled")


@labels.command("get")
@click.option("--campaign", "campaign_id", type=int, required=True)
@click.option("-o", "--output", type=click.File("w"), default="-", help="Write here (default stdout).")
@click.pass_obj
def labels_get(state: State, campaign_id, output):
    """The campaign's images with their current objects, as JSON (the shape `labels submit` reads)."""
    items = [{"image_id": image.image_id,
              "objects": [{"bounding_box": o.bounding_box, "label": o.label, "label_original": o.label_original,
                           "confidence": o.confidence, "object_id": o.object_id} for o in image.objects]}
             for image in state.client.list_campaign_objects(campaign_id)]
    json.dump(items, output, indent=None if state.as_json else 2)
    output.write("\n")


@cli.command()
@click.option("--campaign", "campaign_id", type=int, required=True)
@click.option("--format", "fmt", type=click.Choice(["coco", "automl"]), required=True)
@click.option("--version", type=int, help="A dataset version (coco: default the current labels; automl: the "
                                          "newest exported version).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="coco: the file; automl: a folder for annotations.jsonl and MLTable.")
@json_option
@click.pass_obj
def export(state: State, campaign_id, fmt, version, output):
    """Export a campaign's labels to disk (streamed)."""
    client = state.client
    if fmt == "coco":
        size = client.export_coco(campaign_id, output, version=version)
        emit(state, {"path": str(output), "bytes": size}, lambda r: f"{r['bytes']} bytes written to {r['path']}")
        return
    if version is None:
        ready = [d.version for d in client.list_dataset_versions(campaign_id) if d.status in ("exported", "registered")]
        if not ready:
            raise LabelStoreError(None, "no dataset version", f"campaign {campaign_id} has no exported dataset "
                                  "version yet: build one (finish the campaign) or give --version")
        version = max(ready)
    written = client.download_dataset_files(campaign_id, version, output)
    emit(state, {"version": version, "files": [str(p) for p in written]},
         lambda r: f"version {r['version']}: " + ", ".join(r["files"]))


# --- keys -------------------------------------------------------------------------------------------------

@cli.group(cls=Group)
def keys():
    """API keys (admin)."""


def _key_line(k: m.ApiKey) -> str:
    revoked = f"\trevoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else ""
    return f"{k.key_id}\t{k.owner.name if k.owner else ''}\t{','.join(k.roles)}{revoked}"


def _with_secret(k: m.ApiKeyWithSecret) -> str:
    return f"key {k.apikey}\nsecret {k.apisecret}\n(the secret is shown only now)"


@keys.command("create")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(["admin", "image-admin", "labeler", "uploader", "reader"]))
@click.option("--email")
@click.option("--device")
@click.option("--campaign", "campaign_ids", type=int, multiple=True, help="Campaign a labeler key may label.")
@click.option("--set", "imageset_ids", type=int, multiple=True, help="Image set an uploader key may add to.")
@click.option("--expires", help="Expiry (ISO 8601).")
@click.option("--description")
@json_option
@click.pass_obj
def keys_create(state: State, roles, email, device, campaign_ids, imageset_ids, expires, description):
    """Create a key for a user (--email) or a device (--device); prints its secret once."""
    created = state.client.create_key(list(roles), email=email, device=device, expires_at=expires,
                                      description=description, campaign_ids=list(campaign_ids) or None,
                                      imageset_ids=list(imageset_ids) or None)
    emit(state, created, _with_secret)


@keys.command("list")
@click.option("--include-revoked", is_flag=True)
@json_option
@click.pass_obj
def keys_list(state: State, include_revoked):
    """Every key (never a secret)."""
    emit_all(state, state.client.list_keys(include_revoked=include_revoked), _key_line)


@keys.command("revoke")
@click.argument("key_id")
@json_option
@click.pass_obj
def keys_revoke(state: State, key_id):
    """Revoke a key: refused from the very next request."""
    emit(state, state.client.revoke_key(key_id), _key_line)


@keys.command("rotate")
@click.argument("key_id")
@click.option("--grace-seconds", type=int, default=0, show_default=True,
              help="How long the old secret keeps working.")
@json_option
@click.pass_obj
def keys_rotate(state: State, key_id, grace_seconds):
    """Give a key a new secret; prints it once."""
    emit(state, state.client.rotate_key(key_id, grace_seconds), _with_secret)


@cli.command("config-path", hidden=True)
def show_config_path():
    click.echo(config_path())


__all__ = ["cli", "main", "resolve"]
