"""Every operation in the spec against every role and every kind of bad credentials.

RULES is written out here on purpose, not read from the spec's x-roles: a change of who may call what
must be made twice, and an operation without a rule here fails the first test.
"""
import pytest
import yaml

from tests.helpers import ROOT, defer_check_storage

ALL = {"admin", "image-admin", "labeler", "uploader", "reader"}
READ = {"admin", "image-admin", "reader"}
MANAGE = {"admin", "image-admin"}
# "role:param" means: that role, only for the values of path parameter `param` its key is bound to.
RULES = {
    "app.api.keys.me": ALL,
    "app.api.keys.list_keys": {"admin"},
    "app.api.keys.create_key": {"admin"},
    "app.api.keys.get_key": {"admin"},
    "app.api.keys.revoke_key": {"admin"},
    "app.api.keys.rotate_key": {"admin"},
    "app.api.keys.erase": {"admin"},
    "app.api.audit.list_entries": {"admin"},
    "app.api.webhooks.list_webhooks": {"admin"},
    "app.api.webhooks.register": {"admin"},
    "app.api.webhooks.get_webhook": {"admin"},
    "app.api.webhooks.delete_webhook": {"admin"},
    "app.api.webhooks.list_deliveries": {"admin"},
    "app.api.webhooks.redeliver": {"admin"},
    "app.api.image_sets.list_sets": READ,
    "app.api.image_sets.create": MANAGE,
    "app.api.image_sets.get": READ | {"uploader:imageset_id"},
    "app.api.image_sets.change_status": MANAGE,
    "app.api.image_sets.update": MANAGE,
    "app.api.image_sets.delete": MANAGE,
    "app.api.image_sets.new_dropbox_url": MANAGE | {"uploader:imageset_id"},
    "app.api.image_sets.list_images": READ,
    "app.api.image_sets.add_images": MANAGE | {"uploader:imageset_id"},
    "app.api.image_sets.report": READ | {"uploader:imageset_id"},
    "app.api.uploads.upload": MANAGE | {"uploader:imageset_id"},
    "app.api.url_imports.list_imports": READ,
    "app.api.url_imports.create_import": MANAGE,
    "app.api.url_imports.get_import": READ,
    "app.api.url_imports.import_report": READ,
    "app.api.images.list_images": READ,
    "app.api.images.redirect": READ | {"labeler:image_id"},
    "app.api.images.read_url": READ | {"labeler:image_id"},
    "app.api.images.metadata": READ | {"labeler:image_id"},
    "app.api.images.update": MANAGE,
    "app.api.images.delete": MANAGE,
    "app.api.images.grayscale": READ | {"labeler:image_id"},
    "app.api.images.thumbnail": READ | {"labeler:image_id"},
    "app.api.images.redirect_by_md5": READ,
    "app.api.images.metadata_by_md5": READ,
    "app.api.campaigns.list_campaigns": READ | {"labeler"},
    "app.api.campaigns.create": MANAGE,
    "app.api.campaigns.get": READ | {"labeler:campaign_id"},
    "app.api.campaigns.change_status": MANAGE,
    "app.api.campaigns.update": MANAGE,
    "app.api.campaigns.archive": {"admin"},
    "app.api.campaigns.list_images": READ | {"labeler:campaign_id"},
    "app.api.campaigns.add_images": MANAGE,
    "app.api.campaigns.list_objects": READ | {"labeler:campaign_id"},
    "app.api.campaigns.submit_objects": MANAGE | {"labeler:campaign_id"},
    "app.api.campaigns.revisions": READ | {"labeler:campaign_id"},
    "app.api.campaigns.image_objects": READ | {"labeler:image_id"},
    "app.api.datasets.list_versions": READ,
    "app.api.datasets.create_version": MANAGE,
    "app.api.datasets.get_version": READ,
    "app.api.datasets.retry": MANAGE,
    "app.api.datasets.coco": READ,
    "app.api.operations.list_jobs": {"admin"},
    "app.api.operations.retry_job": {"admin"},
    "app.api.operations.get_job": {"admin"},
    "app.api.operations.queue": {"admin"},
    "app.api.operations.finishing_histogram": READ,
    "app.api.operations.ingest_histogram": READ,
}
# What an allowed call answers: `target` prepares data on which every allowed call succeeds.
ANSWERS = {operation_id: 200 for operation_id in RULES} | {
    "app.api.keys.create_key": 201,
    "app.api.image_sets.create": 201,
    "app.api.image_sets.change_status": 202,  # finishing is queued
    "app.api.image_sets.delete": 409,  # its image is in the target's active campaign: refused naming it
    "app.api.url_imports.create_import": 202,  # its chunks are queued
    "app.api.images.redirect": 303,  # to the image's read URL
    "app.api.images.grayscale": 303,  # to the rendition's read URL
    "app.api.images.thumbnail": 303,
    "app.api.images.redirect_by_md5": 303,
    "app.api.images.delete": 202,  # the target's image in no campaign: its delete is queued
    "app.api.campaigns.create": 201,
    "app.api.campaigns.archive": 409,  # the target's campaign is active: only a finished one is archived
    "app.api.datasets.create_version": 202,  # its build is queued
    "app.api.datasets.retry": 202,  # the failed version is built again
    "app.api.operations.retry_job": 202,  # the failed job is queued again
    "app.api.webhooks.register": 201,
    "app.api.webhooks.redeliver": 202,  # the delivery is queued again
}
# A valid body for each operation that takes one, given the target.
BODIES = {
    "app.api.keys.create_key": lambda target: {"roles": ["reader"], "email": "someone@example.org"},
    "app.api.webhooks.register": lambda target: {"url": "https://93.184.215.14/hooks", "events": ["key.revoked"]},
    "app.api.image_sets.create": lambda target: {"title": "permission table"},
    "app.api.image_sets.change_status": lambda target: {"new_status": "finished"},
    "app.api.image_sets.update": lambda target: {"title": "permission table renamed", "metadata": {"site": "x"}},
    "app.api.images.update": lambda target: {"type": "trail camera", "location_description": "north gate"},
    "app.api.campaigns.update": lambda target: {"metadata": {"round": 2}, "labels": ["deer", "fox"]},
    "app.api.image_sets.add_images": lambda target: [{"id": target["image_id"]}],
    "app.api.uploads.upload": lambda target: {"files": [{"name": "p.png", "content_base64": PNG_BASE64}]},
    "app.api.url_imports.create_import": lambda target: {"urls": ["https://example.org/a.jpg"]},
    "app.api.campaigns.create": lambda target: {"title": "permission table", "labeler_email": "l@example.org"},
    "app.api.campaigns.change_status": lambda target: {"new_status": "completed"},
    "app.api.campaigns.add_images": lambda target: [{"id": target["image_id"]}],
    "app.api.campaigns.submit_objects": lambda target: [{"image_id": target["image_id"], "objects": []}],
}
PNG_BASE64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
# Datasets are built from completed campaigns, labels accepted by active ones: the datasets' operations get
# the target's completed campaign.
COMPLETED_CAMPAIGN = {"app.api.datasets.list_versions", "app.api.datasets.create_version",
                      "app.api.datasets.get_version", "app.api.datasets.retry", "app.api.datasets.coco"}
FREE_IMAGE = {"app.api.images.delete"}  # gets the target's image that no campaign holds


def allowed(role: str, operation_id: str) -> bool:
    return any(rule == role or rule.startswith(role + ":") for rule in RULES[operation_id])


def scoped(role: str, operation_id: str) -> str | None:
    return next((rule.split(":")[1] for rule in RULES[operation_id] if rule.startswith(role + ":")), None)


def operations():
    spec = yaml.safe_load((ROOT / "app" / "openapi" / "api.yaml").read_text())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                yield method, path, operation


OPERATIONS = list(operations())


def test_every_operation_has_a_rule_and_the_spec_agrees():
    assert {op["operationId"] for _, _, op in OPERATIONS} == set(RULES)
    for _, _, op in OPERATIONS:
        assert set(op.get("x-roles", [])) == RULES[op["operationId"]], op["operationId"]
        assert str(ANSWERS[op["operationId"]]) in op["responses"], op["operationId"]


@pytest.fixture
def target(make_key, image_set, app_context, flask_app):
    """Path parameters naming things that exist, in the state where each operation succeeds: a reader's key,
    an image set just created with one image and a finished URL import, an active campaign over that image, a
    completed one whose dataset version 1 failed, and a background job that failed for good."""
    from sqlalchemy import text

    from app.extensions import db
    from app.models import Dataset, Image, UrlImport

    image = Image(imageset_id=image_set["imageset_id"], blobstorage_path="imagesets/x/a.jpg", md5="0" * 32,
                  filetype="jpeg", filesize=10, width=4, height=3, renditions=["grayscale", "thumbnail"])
    free = Image(imageset_id=image_set["imageset_id"], blobstorage_path="imagesets/x/b.jpg", md5="1" * 32,
                 filetype="jpeg", filesize=10, width=4, height=3)
    db.session.add_all([image, free])
    db.session.flush()
    campaign = campaign_with(db, "permission target", [image.id])
    completed = campaign_with(db, "permission completed", [image.id], status="completed")
    db.session.add(Dataset(campaign_id=completed.id, version=1, name="permission_completed", status="failed",
                           error="the build gave up", folder="datasets/permission_completed/1"))
    url_import = UrlImport(imageset_id=image_set["imageset_id"], status="finished", total=0)  # the set may finish
    db.session.add(url_import)
    db.session.flush()
    # Read before the one commit (reading after it would load each row back).
    made = {"imageset_id": image_set["imageset_id"], "image_id": image.id, "campaign_id": campaign.id,
            "completed_campaign_id": completed.id, "version": 1, "md5": image.md5, "free_image_id": free.id,
            "import_id": url_import.id, **webhook_with_delivery(db)}
    db.session.commit()
    job_id = defer_check_storage(flask_app)
    db.session.execute(text("UPDATE procrastinate_jobs SET status = 'failed', attempts = 8 WHERE id = :id"),
                       {"id": job_id})
    db.session.commit()
    return {"key_id": make_key("reader")["Authentication-Key"], "job_id": job_id, **made}


def webhook_with_delivery(db):
    """A webhook (a public address: registration checks it, nothing is sent) and a delivery of one event to it."""
    from app.models import WebhookDelivery
    from app.webhooks import service

    webhook, _ = service.register(url="https://93.184.215.14/hooks", events=["key.revoked"])
    service.emit("key.revoked", {"key_id": "permission-table"})
    db.session.flush()
    return {"webhook_id": webhook.id, "delivery_id": db.session.query(WebhookDelivery.id).scalar()}


def campaign_with(db, title, image_ids, status="active"):
    from app.models import Campaign, CampaignImage, Principal

    labeler = Principal(kind="user", name=f"{title}@example.org")
    campaign = Campaign(title=title, status=status, labeler=labeler, progress_total=len(image_ids), progress_done=0)
    db.session.add(campaign)
    db.session.flush()
    db.session.add_all(CampaignImage(campaign_id=campaign.id, image_id=i) for i in image_ids)
    db.session.flush()
    return campaign


def key_for(make_key, role, target):
    """A key with `role`, bound to the target's things where the role is a scoped one."""
    if role == "uploader":
        return make_key(role, imageset_ids=[target["imageset_id"]])
    if role == "labeler":
        return make_key(role, campaign_ids=[target["campaign_id"]])
    return make_key(role)


def call(client, method, path, operation, headers, target):
    operation_id = operation["operationId"]
    if operation_id in COMPLETED_CAMPAIGN:
        target = {**target, "campaign_id": target["completed_campaign_id"]}
    if operation_id in FREE_IMAGE:
        target = {**target, "image_id": target["free_image_id"]}
    body = BODIES[operation_id](target) if operation_id in BODIES else None
    return client.request(method.upper(), "/api/v1" + path.format(**target), headers=headers, json=body,
                          follow_redirects=False)


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("method, path, operation", OPERATIONS, ids=[op["operationId"] for _, _, op in OPERATIONS])
def test_role_table(client, make_key, target, role, method, path, operation):
    response = call(client, method, path, operation, key_for(make_key, role, target), target)
    if allowed(role, operation["operationId"]):
        assert response.status_code == ANSWERS[operation["operationId"]], response.text
    else:
        assert response.status_code == 403, response.text
        assert role in response.json()["detail"]


@pytest.mark.parametrize("method, path, operation", [o for o in OPERATIONS if scoped("uploader", o[2]["operationId"])],
                         ids=[o[2]["operationId"] for o in OPERATIONS if scoped("uploader", o[2]["operationId"])])
def test_scoped_key_cannot_reach_or_detect_other_image_sets(client, make_key, make_image_set, target, method, path,
                                                            operation):
    mine = make_key("uploader", imageset_ids=[target["imageset_id"]])
    other = make_image_set()
    for imageset_id in (other["imageset_id"], 999999):  # someone else's, and one that does not exist
        response = call(client, method, path, operation, mine, {**target, "imageset_id": imageset_id})
        assert response.status_code == 404, response.text
        assert response.json()["detail"] == f"no image set {imageset_id}"


@pytest.fixture
def bad_credentials(make_key, client, admin, app_context):
    from sqlalchemy import text

    from app.extensions import db

    revoked, expired = make_key("admin"), make_key("admin")
    client.delete(f"/api/v1/keys/{revoked['Authentication-Key']}", headers=admin)
    db.session.execute(text("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE key_id = :k"),
                       {"k": expired["Authentication-Key"]})
    db.session.commit()
    return {
        "no key": {},
        "key without secret": {"Authentication-Key": admin["Authentication-Key"]},
        "wrong secret": {**admin, "Authentication-Secret": "wrong"},
        "unknown key": {**admin, "Authentication-Key": "lsk_zzzzzzzzzzzzzzzzzzzz"},
        "revoked": revoked,
        "expired": expired,
    }


@pytest.mark.parametrize("method, path, operation", OPERATIONS, ids=[op["operationId"] for _, _, op in OPERATIONS])
def test_bad_credentials_are_401(client, bad_credentials, target, method, path, operation):
    for name, headers in bad_credentials.items():
        response = call(client, method, path, operation, headers, target)
        assert response.status_code == 401, f"{name}: {response.text}"
        assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path, status", [
    ("/info/status", 503),  # red: no worker runs beside this test
    ("/info/version", 200), ("/metrics", 200), ("/api/v1/openapi.json", 200), ("/api/v1/ui/", 200),
])
def test_open_paths_need_no_key(client, path, status):
    assert client.get(path).status_code == status
