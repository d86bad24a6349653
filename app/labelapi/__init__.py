"""Coming from LabelAPI: `python -m app import-labelapi` copies a LabelAPI database into this service
(app.labelapi.importer), and a background job reads what LabelAPI never recorded from the blobs
(app.labelapi.backfill). README, "Coming from LabelAPI", says what moves and how."""
