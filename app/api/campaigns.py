from flask import request

from app.api import iso
from app.auth.connexion_glue import current_caller
from app.services import campaigns as campaign_service
from app.services import deletion


def campaign_out(campaign, token=None) -> dict:
    out = {
        "campaign_id": campaign.id,
        "title": campaign.title,
        "status": campaign.status,
        "progress": {"total": campaign.progress_total, "done": campaign.progress_done},
        "metadata": campaign.meta_data,
        "label_translations": campaign.label_translations,
        "labels": campaign.labels,
        "labeler_email": campaign.labeler.name,
        "date_created": iso(campaign.date_created),
        "date_started": iso(campaign.date_started),
        "date_completed": iso(campaign.date_completed),
        "date_finished": iso(campaign.date_finished),
        "date_archived": iso(campaign.date_archived),
        "created_by": campaign.created_by.name if campaign.created_by else None,
    }
    if token is not None:
        out["access_token"] = {"apikey": token.apikey, "apisecret": token.apisecret}
    return out


def object_out(obj) -> dict:
    return {"object_id": obj.id, "image_id": obj.image_id, "campaign_id": obj.campaign_id, "label": obj.label,
            "label_original": obj.label_original,
            "bounding_box": {"xmin": obj.box_xmin, "xmax": obj.box_xmax, "ymin": obj.box_ymin, "ymax": obj.box_ymax},
            "confidence": obj.confidence, "date_added": obj.date_added.isoformat(), "added_by": obj.added_by}


def list_campaigns(page=1, per_page=50, status=None):
    result = campaign_service.list_campaigns(page=page, per_page=per_page, caller=current_caller(), status=status)
    return {"pagination": result.pagination, "campaigns": [campaign_out(c) for c in result.items]}


def create(body):
    campaign, token = campaign_service.create(title=body["title"], labeler_email=body["labeler_email"],
                                       metadata=body.get("metadata"),
                                       label_translations=body.get("label_translations"),
                                       labels=body.get("labels"), created_by=current_caller())
    return campaign_out(campaign, token), 201


def get(campaign_id):
    return campaign_out(campaign_service.get(campaign_id))


def update(campaign_id, body):
    return campaign_out(campaign_service.update(campaign_id, body))


def change_status(campaign_id, body):
    return campaign_out(campaign_service.change_status(campaign_id, body["new_status"]))


def list_images(campaign_id, page=1, per_page=1000):
    result = campaign_service.list_images(campaign_id, page=page, per_page=per_page)
    return {"pagination": result.pagination,
            "images": [{"image_id": i, "url": f"/images/{i}"} for i in result.items]}


def add_images(campaign_id, body):
    return {"added": campaign_service.add_images(campaign_id, body)}


def list_objects(campaign_id, page=1, per_page=1000):
    result = campaign_service.list_images(campaign_id, page=page, per_page=per_page)
    found = campaign_service.current_objects(campaign_id, result.items)
    return {"pagination": result.pagination, "images": [
        {"image_id": i, "url": f"/images/{i}", "objects": [object_out(o) for o in found[i]]} for i in result.items]}


def submit_objects(campaign_id, body):
    return campaign_service.submit(campaign_id, body, caller=current_caller(), request_id=request.headers.get("X-Request-ID"))


def revisions(campaign_id, image_id):
    return {"revisions": [
        {"revision": r.revision, "current": current, "submitted_by": r.submitted_by, "key_id": r.key_id,
         "key_created_by": minted_by, "request_id": r.request_id, "date_submitted": r.date_submitted.isoformat(),
         "objects": [object_out(o) for o in objects]}
        for r, objects, current, minted_by in campaign_service.revisions(campaign_id, image_id)]}


def image_objects(image_id, campaigns=None):
    # Repeated (?campaigns=3&campaigns=1, what `requests` sends for a list) or comma-separated, in order
    wanted = [int(c) for item in campaigns or [] for c in item.split(",")]
    _, objects = campaign_service.image_objects(image_id, wanted, current_caller())
    return [object_out(o) for o in objects]


def archive(campaign_id):
    return campaign_out(deletion.archive_campaign(campaign_id))
