"""Azure ML: the only code that imports azure.ai.ml (imported lazily: it takes a second to load).

Registers a dataset version as two data assets: "<name>_labels" (mltable over annotations.jsonl) and
"<name>_images" (uri_folder of the images), both at the dataset's version number. Refusals that retrying
cannot fix (401, 4xx such as an immutable asset path or a missing workspace) become RegistrationRefused
with a message an operator can act on; anything else (5xx, network) is raised for the job queue to retry.
"""
from __future__ import annotations

import hashlib
import logging

logger = logging.getLogger(__name__)


class RegistrationRefused(Exception):
    """Azure ML said no for good; str() says why and what to check."""


def datastore_uri(settings, path: str) -> str:
    """The long-form datastore URI: the short azureml://datastores/... form resolves to nothing offline."""
    return (f"azureml://subscriptions/{settings.azure_ml_subscription_id}/resourcegroups/"
            f"{settings.azure_ml_resource_group}/workspaces/{settings.azure_ml_workspace_name}/datastores/"
            f"{settings.azure_ml_datastore}/paths/{path}")


def credential_for(settings):
    """The service principal of the AZURE_ML_SP_* settings, else DefaultAzureCredential(). The app builds it once
    (app.factory), so its tokens are cached across registrations and status probes."""
    options = {}
    if settings.azure_ml_authority_host:
        options.update(authority=settings.azure_ml_authority_host, disable_instance_discovery=True)
    if settings.azure_ml_ca_bundle:
        options["connection_verify"] = str(settings.azure_ml_ca_bundle)
    if settings.azure_ml_sp_tenant_id:
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(settings.azure_ml_sp_tenant_id, settings.azure_ml_sp_application_id,
                                      settings.azure_ml_sp_password.get_secret_value(), **options)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**options)


def client(settings, credential=None):
    """An MLClient for the configured workspace; `credential` (any azure-identity credential) replaces the one
    the settings describe."""
    from azure.ai.ml import MLClient

    options = {"enable_telemetry": False, "show_progress": False}
    if settings.azure_ml_resource_manager_url:  # a sovereign or private cloud (or a test stand-in)
        url = settings.azure_ml_resource_manager_url.rstrip("/") + "/"
        # The SDK keeps cloud definitions per process by name: one name per endpoint.
        options.update(cloud=f"LabelStore-{hashlib.sha256(url.encode()).hexdigest()[:12]}", cloud_metadata={
            "azure_portal": url, "resource_manager": url, "active_directory": settings.azure_ml_authority_host or url,
            "aml_resource_id": url, "storage_endpoint": "core.windows.net", "registry_discovery_endpoint": url})
    if settings.azure_ml_ca_bundle:
        options["connection_verify"] = str(settings.azure_ml_ca_bundle)
    return MLClient(credential or credential_for(settings), settings.azure_ml_subscription_id,
                    settings.azure_ml_resource_group, settings.azure_ml_workspace_name, **options)


def register_dataset(settings, *, name: str, version: int, labels_folder: str, images_folder: str,
                     campaign_id: int, annotations_sha256: str, description: str, credential=None) -> tuple[str, str]:
    """Both assets, registered (or found identical) at `version`; returns their Azure ML ids."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data

    tags = {"campaign_id": str(campaign_id), "annotations_sha256": annotations_sha256, "source": "label-store"}
    assets = [
        Data(name=f"{name}_labels", version=str(version), type=AssetTypes.MLTABLE, description=description,
             path=datastore_uri(settings, labels_folder.rstrip("/") + "/"), tags=tags),
        Data(name=f"{name}_images", version=str(version), type=AssetTypes.URI_FOLDER, description=description,
             path=datastore_uri(settings, images_folder.rstrip("/") + "/"), tags=tags),
    ]
    ml = client(settings, credential)
    ids = []
    for asset in assets:
        ids.append(_create(ml, asset, settings).id)
        logger.info("registered Azure ML data asset", extra={"asset": asset.name, "version": asset.version})
    return ids[0], ids[1]


def _create(ml, asset, settings):
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    where = (f"workspace {settings.azure_ml_workspace_name!r} (resource group {settings.azure_ml_resource_group!r}, "
             f"subscription {settings.azure_ml_subscription_id!r})")
    try:
        return ml.data.create_or_update(asset)
    except ClientAuthenticationError as exc:
        raise RegistrationRefused(
            f"Azure ML refused the credentials ({exc.status_code or 'no token'}) registering {asset.name}:"
            f"{asset.version}: check AZURE_ML_SP_TENANT_ID / AZURE_ML_SP_APPLICATION_ID / AZURE_ML_SP_PASSWORD and "
            f"the principal's role on {where}") from None
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status in (408, 429) or status >= 500:
            raise  # transient: the job queue retries
        message = exc.error.message if exc.error and exc.error.message else exc.reason
        hint = ""
        if "cannot be updated" in (message or "").lower():
            hint = (f": {asset.name} version {asset.version} already exists with another path; asset versions are "
                    "immutable in Azure ML, so archive or delete it there, or build a new dataset version")
        elif status == 404:
            hint = f": {where} was not found; check AZURE_ML_SUBSCRIPTION_ID, AZURE_ML_RESOURCE_GROUP, " \
                   "AZURE_ML_WORKSPACE_NAME"
        raise RegistrationRefused(f"Azure ML refused {asset.name}:{asset.version} ({status} "
                                  f"{exc.error.code if exc.error else ''}) {message}{hint}") from None


def probe(settings, credential=None) -> str:
    """Reachable: a token is granted and the workspace answers."""
    workspace = client(settings, credential).workspaces.get(settings.azure_ml_workspace_name)
    return f"reachable, workspace {workspace.name!r}"
