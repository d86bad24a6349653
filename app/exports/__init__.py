"""Exports: a dataset version's (or a campaign's current) labels written out in the formats training
jobs read. Every writer streams: rows come from the database in pages and leave as they are made, so
memory stays flat whatever the size, and the same snapshot always gives the same bytes."""
