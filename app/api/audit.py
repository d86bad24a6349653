from app.api import iso
from app.services import audit


def entry_out(entry) -> dict:
    return {"id": entry.id, "at": iso(entry.at), "action": entry.action, "entity": entry.entity,
            "entity_id": entry.entity_id, "key_id": entry.key_id, "actor": entry.actor,
            "request_id": entry.request_id, "before": entry.before, "after": entry.after}


def list_entries(cursor="", per_page=50, entity=None, entity_id=None, key_id=None):
    rows, next_cursor = audit.list_after(audit.Filters(entity=entity, entity_id=entity_id, key_id=key_id),
                                         cursor=cursor, per_page=per_page)
    return {"next_cursor": next_cursor, "entries": [entry_out(e) for e in rows]}
