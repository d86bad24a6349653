"""The app's shared state (settings, storage, authenticator), reached the one way: `app_state()`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from app.auth.authenticator import Authenticator
    from app.settings import Settings
    from app.storage import BlobStorage

EXTENSION = "label_store"


@dataclass
class State:
    settings: Settings
    storage: BlobStorage
    probe_storage: BlobStorage  # no retries, short timeouts: for /info/status
    authenticator: Authenticator | None = None
    azureml_credential: object = None  # an azure-identity credential, when Azure ML is configured


def app_state(flask_app=None) -> State:
    """The state of `flask_app`, or of the app in context (a request's, a job's, a command's)."""
    return (flask_app or current_app).extensions[EXTENSION]
