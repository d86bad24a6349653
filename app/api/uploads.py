"""Direct upload into an image set (app.ingest.uploads)."""


def upload(imageset_id, body=None):
    raise NotImplementedError("being built")
