"""URL imports (app.ingest.url_imports)."""
from app.api import iso
from app.auth.connexion_glue import current_caller
from app.ingest import url_imports


def import_out(url_import) -> dict:
    return {
        "import_id": url_import.id,
        "imageset_id": url_import.imageset_id,
        "status": url_import.status,
        "error": url_import.error,
        "date_created": url_import.date_created.isoformat(),
        "date_finished": iso(url_import.date_finished),
        "progress": url_imports.progress(url_import),
    }


def list_imports(imageset_id, page=1, per_page=50):
    result = url_imports.list_for_set(imageset_id, page=page, per_page=per_page)
    return {"pagination": result.pagination, "imports": [import_out(i) for i in result.items]}


def create_import(imageset_id, body=None):
    return import_out(url_imports.create(imageset_id, body, created_by=current_caller())), 202


def get_import(import_id):
    return import_out(url_imports.get(import_id))


def import_report(import_id, page=1, per_page=50, outcome=None):
    result = url_imports.report(import_id, page=page, per_page=per_page, outcome=outcome)
    return {"pagination": result.pagination, "urls": [
        {"position": r.position, "url": r.url, "outcome": r.outcome, "image_id": r.image_id, "reason": r.reason,
         "http_status": r.http_status} for r in result.items]}
