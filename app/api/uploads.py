"""Direct upload into an image set (app.ingest.uploads): multipart `file` parts, or JSON with base64 content."""
from flask import request

from app.auth.connexion_glue import current_caller
from app.ingest import uploads


def upload(imageset_id, body=None, file=None):
    if file:
        files = [uploads.File(part.filename or "", part.stream) for part in file]
    else:
        files = [uploads.from_base64(item) for item in (body or {}).get("files", [])]
    results = uploads.upload(imageset_id, files, caller=current_caller(),
                             request_id=request.headers.get("X-Request-ID"))
    return {"results": [_result_out(r) for r in results]}


def _result_out(result) -> dict:
    out = {"name": result.name, "outcome": result.outcome}
    for key in ("image_id", "duplicate_of", "reason", "objects"):
        if getattr(result, key) is not None:
            out[key] = getattr(result, key)
    return out
