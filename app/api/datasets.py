from flask import Response, stream_with_context

from app.api import iso
from app.auth.connexion_glue import current_caller
from app.services import datasets



def dataset_out(dataset) -> dict:
    return {
        "campaign_id": dataset.campaign_id, "version": dataset.version, "status": dataset.status,
        "error": dataset.error, "folder": dataset.folder, "annotations_sha256": dataset.annotations_sha256,
        "image_count": dataset.image_count, "object_count": dataset.object_count,
        "azureml": {"labels_asset": f"{dataset.name}_labels", "images_asset": f"{dataset.name}_images",
                    "labels_id": dataset.azureml_labels_id, "images_id": dataset.azureml_images_id},
        "date_created": iso(dataset.date_created), "date_exported": iso(dataset.date_exported),
        "date_registered": iso(dataset.date_registered), "created_by": dataset.created_by,
    }


def list_versions(campaign_id):
    return {"datasets": [dataset_out(d) for d in datasets.list_versions(campaign_id)]}


def create_version(campaign_id):
    return dataset_out(datasets.create_version(campaign_id, created_by=current_caller())), 202


def get_version(campaign_id, version):
    dataset = datasets.get(campaign_id, version)
    files = [{"name": name, "url": signed.url, "expires_at": signed.expires_at.isoformat()}
             for name, signed in datasets.files(dataset)]
    return {**dataset_out(dataset), "files": files}


def retry(campaign_id, version):
    return dataset_out(datasets.retry(campaign_id, version)), 202


def coco(campaign_id, version=None):
    chunks = datasets.coco_export(campaign_id, version)
    name = f"campaign-{campaign_id}" + (f"-v{version}" if version else "") + ".coco.json"
    return Response(stream_with_context(chunks), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
