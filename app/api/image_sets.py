from app.api import iso
from app.api.images import image_out
from app.auth.connexion_glue import current_caller
from app.services import deletion, image_sets


def image_set_out(image_set, signed_url=None) -> dict:
    out = {
        "imageset_id": image_set.id,
        "title": image_set.title,
        "status": image_set.status,
        "metadata": image_set.meta_data,
        "blobstorage_path": image_set.blobstorage_path,
        "date_created": image_set.date_created.isoformat(),
        "date_finished": iso(image_set.date_finished),
        "created_by": image_set.created_by.name if image_set.created_by else None,
        "error": image_set.error,
        "progress": image_sets.progress(image_set),
        "validation": image_sets.rules(image_set).as_dict(),
    }
    if signed_url is not None:
        out.update(dropbox_url=signed_url.url, dropbox_url_expires_at=signed_url.expires_at.isoformat())
    return out


def list_sets(page=1, per_page=50, status=None):
    result = image_sets.list_sets(page=page, per_page=per_page, status=status)
    return {"pagination": result.pagination, "image_sets": [image_set_out(s) for s in result.items]}


def create(body):
    image_set, url = image_sets.create(title=body["title"], metadata=body.get("metadata"),
                                       validation=body.get("validation"), created_by=current_caller())
    return image_set_out(image_set, url), 201


def get(imageset_id):
    return image_set_out(image_sets.get(imageset_id))


def update(imageset_id, body):
    return image_set_out(image_sets.update(imageset_id, body))


def change_status(imageset_id, body):
    return image_set_out(image_sets.change_status(imageset_id, body["new_status"])), 202


def new_dropbox_url(imageset_id):
    image_set, url = image_sets.new_upload_url(imageset_id)
    return image_set_out(image_set, url)


def list_images(imageset_id, page=1, per_page=50):
    result = image_sets.list_images(imageset_id, page=page, per_page=per_page)
    return {"pagination": result.pagination, "images": [image_out(i) for i in result.items]}


def add_images(imageset_id, body):
    return {"added": image_sets.add_images(imageset_id, body, caller=current_caller())}


def report(imageset_id, page=1, per_page=50, outcome=None):
    result = image_sets.report(imageset_id, page=page, per_page=per_page, outcome=outcome)
    return {"pagination": result.pagination, "files": [
        {"name": r.name, "source": r.source, "outcome": r.outcome, "image_id": r.image_id, "reason": r.reason, "filesize": r.filesize}
        for r in result.items]}


def delete(imageset_id, force=False):
    return image_set_out(deletion.delete_image_set(imageset_id, force=force, caller=current_caller())), 202
