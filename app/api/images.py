from app.api import finite, iso
from app.api.keys import parse_datetime
from app.auth.connexion_glue import current_caller
from app.services import deletion, images, renditions


def image_out(image) -> dict:
    return {
        "image_id": image.id,
        "blobstorage_path": image.blobstorage_path,
        "imageset": {"imageset_id": image.imageset.id, "title": image.imageset.title} if image.imageset else None,
        "date_taken": iso(image.date_taken),
        "location_taken": {"description": image.location_description, "lat": finite(image.lat), "lon": finite(image.lon)},
        "type": image.type,
        "metadata": image.meta_data,
        "tss_id": image.tss_id,
        "file": {"filetype": image.filetype, "filesize": image.filesize,
                 "dimensions": {"width": image.width, "height": image.height}},
        "md5": image.md5,
        "exif": image.exif,
        "renditions": list(image.renditions or []),
        "date_added": image.date_added.isoformat(),
        "status": image.status,
        "retired_at": iso(image.retired_at),
    }


def list_images(page=1, per_page=50, cursor=None, imageset_id=None, md5=None, type=None, date_taken_from=None,
                date_taken_to=None, camera_make=None, camera_model=None, thumbnail_urls=False):
    filters = images.Filters(imageset_id=imageset_id, md5=md5, type=type,
                             date_taken_from=parse_datetime(date_taken_from),
                             date_taken_to=parse_datetime(date_taken_to),
                             camera_make=camera_make, camera_model=camera_model)

    def listed(image) -> dict:
        if not thumbnail_urls:
            return image_out(image)
        signed = renditions.url_if_made(image, "thumbnail")
        return image_out(image) | {"thumbnail_url": signed.url if signed else None}

    if cursor is not None:
        rows, next_cursor = images.list_after(filters, cursor=cursor, per_page=per_page)
        return {"pagination": None, "next_cursor": next_cursor, "images": [listed(i) for i in rows]}
    result, next_cursor = images.list_page(filters, page=page, per_page=per_page)
    return {"pagination": result.pagination, "next_cursor": next_cursor,
            "images": [listed(i) for i in result.items]}


def redirect(image_id):
    return "", 303, {"Location": images.read_url(images.get(image_id)).url}


def read_url(image_id, rendition=None):
    image = images.get(image_id)
    signed = renditions.read_url(image, rendition) if rendition else images.read_url(image)
    return {"url": signed.url, "expires_at": signed.expires_at.isoformat()}


def metadata(image_id):
    return image_out(images.get(image_id))


def update(image_id, body):
    return image_out(images.update(image_id, body))


def redirect_by_md5(md5):
    return "", 303, {"Location": images.read_url(images.get_by_md5(md5)).url}


def metadata_by_md5(md5):
    return image_out(images.get_by_md5(md5))


def grayscale(image_id):
    return "", 303, {"Location": renditions.read_url(images.get(image_id), "grayscale").url}


def thumbnail(image_id):
    return "", 303, {"Location": renditions.read_url(images.get(image_id), "thumbnail").url}


def delete(image_id, force=False):
    """202 while a job deletes it; 200 when it was retired instead (force, an image something holds)."""
    image = deletion.delete_image(image_id, force=force, caller=current_caller())
    return image_out(image), 202 if image.status == "deleting" else 200
