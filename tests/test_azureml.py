"""Registration in Azure ML: the real azure-ai-ml client (and azure-identity's service principal credential)
driven against a local HTTPS stand-in of the Azure ML REST endpoint and of Entra ID; every request asserted."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from urllib.parse import parse_qs

import httpx
import pytest

from tests.azureml_standin import StandIn
from tests.helpers import QUICK_RECOVERY, ROOT, env_for, wait_for_version, wait_until

SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "rg-labels", "ws-labels"


@pytest.fixture
def standin():
    server = StandIn().start()
    yield server
    server.stop()


@pytest.fixture
def aml_overrides(standin, settings_overrides):
    return {**settings_overrides, "azure_ml_subscription_id": SUB, "azure_ml_resource_group": RG,
            "azure_ml_workspace_name": WS, "azure_ml_datastore": "labelstore_images",
            "azure_ml_sp_tenant_id": "tenant-1", "azure_ml_sp_application_id": "app-1",
            "azure_ml_sp_password": "sp-password-1", "azure_ml_resource_manager_url": standin.base_url,
            "azure_ml_authority_host": standin.base_url, "azure_ml_ca_bundle": standin.ca_bundle}


@pytest.fixture
def aml_worker(start_worker, aml_overrides):
    def start(**extra):
        return start_worker(**{**aml_overrides, **extra})

    return start


def data_puts(standin) -> dict:
    prefix = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}/data/"
    return {r["path"].removeprefix(prefix): r for r in standin.requests
            if r["method"] == "PUT" and r["path"].startswith(prefix)}


def test_finished_campaign_is_registered_as_two_assets(client, admin, labelled, aml_worker, standin):
    cid = labelled["campaign_id"]
    aml_worker()
    client.put(f"/api/v1/campaigns/{cid}", json={"new_status": "finished"}, headers=admin)
    version = wait_for_version(client, admin, cid, 1, statuses=("registered", "failed"))
    assert version["status"] == "registered", version["error"]

    token = next(r for r in standin.requests if r["path"] == "/tenant-1/oauth2/v2.0/token")
    form = parse_qs(token["body"] if isinstance(token["body"], str) else "")
    assert form["client_id"] == ["app-1"] and form["client_secret"] == ["sp-password-1"]
    assert form["grant_type"] == ["client_credentials"]

    puts = data_puts(standin)
    assert set(puts) == {f"Beach_Litter_2026_{cid}_labels/versions/1", f"Beach_Litter_2026_{cid}_images/versions/1"}
    datastore = f"azureml://subscriptions/{SUB}/resourcegroups/{RG}/workspaces/{WS}/datastores/labelstore_images/paths/"
    labels = puts[f"Beach_Litter_2026_{cid}_labels/versions/1"]["body"]["properties"]
    assert labels["dataType"] == "mltable" and labels["dataUri"] == datastore + f"datasets/Beach_Litter_2026_{cid}/1/"
    assert labels["tags"] == {"campaign_id": str(cid), "annotations_sha256": version["annotations_sha256"],
                              "source": "label-store"}
    assert "Beach/Litter 2026" in labels["description"]
    images = puts[f"Beach_Litter_2026_{cid}_images/versions/1"]["body"]["properties"]
    assert images["dataType"] == "uri_folder" and images["dataUri"] == datastore + "imagesets/c/"
    assert all(r["headers"]["Authorization"] == "Bearer <redacted>" for r in puts.values())
    assert version["azureml"]["labels_id"].endswith(f"/data/Beach_Litter_2026_{cid}_labels/versions/1")
    assert version["azureml"]["images_id"].endswith(f"/data/Beach_Litter_2026_{cid}_images/versions/1")

    lines = httpx.get(next(f["url"] for f in version["files"] if f["name"] == "annotations.jsonl")).text.splitlines()
    assert json.loads(lines[0])["image_url"] == datastore + "imagesets/c/0.jpg"  # the long form

    client.post(f"/api/v1/campaigns/{cid}/datasets", headers=admin)  # a second version
    assert wait_for_version(client, admin, cid, 2, statuses=("registered", "failed"))["status"] == "registered"
    assert f"Beach_Litter_2026_{cid}_labels/versions/2" in data_puts(standin)


@pytest.mark.parametrize("failure, words", [
    (StandIn.AUTH_FAILURE, ["credentials", "AZURE_ML_SP_PASSWORD"]),
    (StandIn.PATH_IMMUTABLE, ["Asset paths cannot be updated", "immutable"]),
    ((404, {"error": {"code": "ResourceNotFound", "message": "The workspace was not found."}}),
     ["was not found", "AZURE_ML_WORKSPACE_NAME", WS]),
], ids=["401", "path-immutable", "workspace-missing"])
def test_permanent_refusal_fails_the_version_then_retry_registers(client, admin, labelled, aml_worker, standin,
                                                                   failure, words):
    cid = labelled["campaign_id"]
    standin.put_failure = failure
    aml_worker()
    client.post(f"/api/v1/campaigns/{cid}/datasets", headers=admin)
    failed = wait_for_version(client, admin, cid, 1, statuses=("registered", "failed"))
    assert failed["status"] == "failed" and all(w in failed["error"] for w in words), failed["error"]
    assert "sp-password-1" not in failed["error"]
    assert len(data_puts(standin)) == 1  # not retried: retrying cannot help

    standin.put_failure = None  # the operator fixed it
    retried = client.post(f"/api/v1/campaigns/{cid}/datasets/1/retry", headers=admin)
    assert retried.status_code == 202 and retried.json()["status"] == "pending"
    assert wait_for_version(client, admin, cid, 1, statuses=("registered", "failed"))["status"] == "registered"


def test_registration_interrupted_by_a_killed_worker_is_done_again(client, admin, labelled, aml_worker, standin):
    cid = labelled["campaign_id"]
    standin.put_delay = 30  # Azure ML hangs while the first worker waits on it
    doomed = aml_worker()
    client.post(f"/api/v1/campaigns/{cid}/datasets", headers=admin)
    wait_until(lambda: data_puts(standin), timeout=60, message="the first registration attempt")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    standin.put_delay = 0
    aml_worker(**QUICK_RECOVERY)  # notices the dead worker's silence sooner
    assert wait_for_version(client, admin, cid, 1, statuses=("registered", "failed"))["status"] == "registered"


def test_status_reports_azure_ml_reachable(aml_overrides, standin, aml_worker):
    from app.factory import create_app
    from app.settings import load

    aml_worker()
    client = create_app(load(**aml_overrides)).test_client()
    body = wait_until(lambda: (lambda r: r.json() if r.status_code == 200 else None)(client.get("/info/status")),
                      timeout=30, message="status 200")
    assert body["checks"]["azure_ml"] == {"ok": True, "required": True, "message": f"reachable, workspace '{WS}'"}
    standin.stop()
    red = client.get("/info/status")
    assert red.status_code == 503 and not red.json()["checks"]["azure_ml"]["ok"]


MLTABLE_CHECK = """
import json, sys, mltable
frame = mltable.load(sys.argv[1]).to_pandas_dataframe()
print(json.dumps({"types": sorted({type(v).__name__ for v in frame["image_url"]}),
                  "handlers": sorted({v.handler for v in frame["image_url"]}),
                  "labels": [[dict(l) for l in labels] for labels in frame["label"]]}))
"""


MLTABLE_PYTHON = ROOT / ".venv-mltable" / "bin" / "python"


def test_mltable_package_loads_the_exported_files(client, admin, labelled, aml_worker, tmp_path):
    # mltable lives in its own virtualenv (`make test` installs it); its native part looks up a telemetry
    # host, so it runs in a network namespace of its own (util-linux's unshare) and reaches nothing.
    assert MLTABLE_PYTHON.exists(), "run `make test` (it installs .venv-mltable)"
    assert shutil.which("unshare"), "util-linux's unshare is needed"
    cid = labelled["campaign_id"]
    aml_worker()
    client.post(f"/api/v1/campaigns/{cid}/datasets", headers=admin)
    version = wait_for_version(client, admin, cid, 1, statuses=("registered", "failed"))
    for f in version["files"]:
        (tmp_path / f["name"]).write_bytes(httpx.get(f["url"]).content)
    result = subprocess.run(["unshare", "-n", str(MLTABLE_PYTHON), "-c", MLTABLE_CHECK, str(tmp_path)], cwd=tmp_path,
                            env=env_for({}), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["types"] == ["StreamInfo"] and loaded["handlers"] == ["AmlDatastore"]
    assert len(loaded["labels"]) == 3
    for labels in loaded["labels"]:
        for label in labels:
            assert 0 <= label["topX"] < label["bottomX"] <= 1 and 0 <= label["topY"] < label["bottomY"] <= 1


@pytest.mark.azureml_live
@pytest.mark.skipif(not os.environ.get("AZURE_ML_LIVE_WORKSPACE_NAME"),
                    reason="opt-in: set AZURE_ML_LIVE_SUBSCRIPTION_ID, _RESOURCE_GROUP, _WORKSPACE_NAME, _DATASTORE "
                           "(and AZURE_ML_SP_* or a DefaultAzureCredential login) to register against a real workspace")
def test_registers_against_a_real_workspace(settings_overrides):
    import uuid

    from app.azureml import register_dataset
    from app.settings import load

    live = load(**{**settings_overrides,
                   "azure_ml_subscription_id": os.environ["AZURE_ML_LIVE_SUBSCRIPTION_ID"],
                   "azure_ml_resource_group": os.environ["AZURE_ML_LIVE_RESOURCE_GROUP"],
                   "azure_ml_workspace_name": os.environ["AZURE_ML_LIVE_WORKSPACE_NAME"],
                   "azure_ml_datastore": os.environ.get("AZURE_ML_LIVE_DATASTORE", "workspaceblobstore")})
    name = f"labelstore_live_{uuid.uuid4().hex[:8]}"
    labels_id, images_id = register_dataset(live, name=name, version=1, labels_folder=f"datasets/{name}/1",
                                            images_folder="imagesets", campaign_id=0, annotations_sha256="0" * 64,
                                            description="Label Store live registration test")
    assert labels_id.endswith(f"/data/{name}_labels/versions/1") and images_id.endswith(f"/data/{name}_images/versions/1")
