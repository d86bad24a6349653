"""Every way an image comes in (the dropbox's finishing, direct upload, URL import) goes through one pipeline
(app.ingest.pipeline) under one set of rules (app.ingest.rules); renditions are made after (app.ingest.renditions)."""
