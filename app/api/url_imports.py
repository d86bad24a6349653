"""URL imports (app.ingest.url_imports)."""


def list_imports(imageset_id, page=1, per_page=50):
    raise NotImplementedError("being built")


def create_import(imageset_id, body):
    raise NotImplementedError("being built")


def get_import(import_id):
    raise NotImplementedError("being built")


def import_report(import_id, page=1, per_page=50, outcome=None):
    raise NotImplementedError("being built")
