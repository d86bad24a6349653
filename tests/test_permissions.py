"""Every operation in the spec against every role and every kind of bad credentials.

RULES is written out here on purpose, not read from the spec's x-roles: a change of who may call what
must be made twice, and an operation without a rule here fails the first test.
"""
import pytest
import yaml

from tests.conftest import ROOT

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
    "app.api.image_sets.list_sets": READ,
    "app.api.image_sets.create": MANAGE,
    "app.api.image_sets.get": READ | {"uploader:imageset_id"},
    "app.api.image_sets.change_status": MANAGE,
    "app.api.image_sets.new_dropbox_url": MANAGE | {"uploader:imageset_id"},
    "app.api.image_sets.list_images": READ,
    "app.api.image_sets.add_images": MANAGE | {"uploader:imageset_id"},
    "app.api.image_sets.report": READ | {"uploader:imageset_id"},
    "app.api.images.list_images": READ,
    "app.api.images.redirect": READ | {"labeler:image_id"},
    "app.api.images.read_url": READ | {"labeler:image_id"},
    "app.api.images.metadata": READ | {"labeler:image_id"},
    "app.api.campaigns.list_campaigns": READ | {"labeler"},
    "app.api.campaigns.create": MANAGE,
    "app.api.campaigns.get": READ | {"labeler:campaign_id"},
    "app.api.campaigns.change_status": MANAGE,
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
    "app.api.operations.finishing_histogram": READ,
}
# A valid body for each operation that takes one, so allowed calls get past validation.
BODIES = {
    "app.api.keys.create_key": {"roles": ["reader"], "email": "someone@example.org"},
    "app.api.image_sets.create": {"title": "permission table"},
    "app.api.image_sets.change_status": {"new_status": "finished"},
    "app.api.image_sets.add_images": [{"id": 1}],
    "app.api.campaigns.create": {"title": "permission table", "labeler_email": "l@example.org"},
    "app.api.campaigns.change_status": {"new_status": "active"},
    "app.api.campaigns.add_images": [{"id": 1}],
    "app.api.campaigns.submit_objects": [{"image_id": 1, "objects": []}],
}


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


@pytest.fixture
def target(make_key, image_set, app_context):
    """Path parameters naming things that exist."""
    from app.extensions import db
    from app.models import Image

    image = Image(id=1, imageset_id=image_set["imageset_id"], blobstorage_path="imagesets/x/a.jpg", md5="0" * 32,
                  filetype="jpeg", filesize=10, width=4, height=3)
    db.session.add(image)
    db.session.commit()
    campaign = campaign_with(db, "permission target", [image.id])
    return {"key_id": make_key("reader")["Authentication-Key"], "imageset_id": image_set["imageset_id"],
            "image_id": image.id, "campaign_id": campaign.id, "version": 1, "job_id": 1}


def campaign_with(db, title, image_ids, status="active"):
    from app.models import Campaign, CampaignImage, Principal

    labeler = Principal(kind="user", name=f"{title}@example.org")
    campaign = Campaign(title=title, status=status, labeler=labeler, progress_total=len(image_ids), progress_done=0)
    db.session.add(campaign)
    db.session.flush()
    db.session.add_all(CampaignImage(campaign_id=campaign.id, image_id=i) for i in image_ids)
    db.session.commit()
    return campaign


def key_for(make_key, role, target):
    """A key with `role`, bound to the target's things where the role is a scoped one."""
    if role == "uploader":
        return make_key(role, imageset_ids=[target["imageset_id"]])
    if role == "labeler":
        return make_key(role, campaign_ids=[target["campaign_id"]])
    return make_key(role)


def call(client, method, path, operation, headers, target):
    url = "/api/v1" + path.format(**target)
    body = BODIES.get(operation["operationId"])
    return client.request(method.upper(), url, headers=headers, json=body)


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("method, path, operation", OPERATIONS, ids=[op["operationId"] for _, _, op in OPERATIONS])
def test_role_table(client, make_key, target, role, method, path, operation):
    response = call(client, method, path, operation, key_for(make_key, role, target), target)
    if allowed(role, operation["operationId"]):
        assert response.status_code not in (401, 403), response.text
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


@pytest.mark.parametrize("path", ["/info/status", "/info/version", "/metrics", "/api/v1/openapi.json", "/api/v1/ui/"])
def test_open_paths_need_no_key(client, path):
    assert client.get(path).status_code in (200, 503)
