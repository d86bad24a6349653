from datetime import datetime, timezone

from app.api import iso
from app.auth.connexion_glue import current_caller
from app.services import keys


def parse_datetime(value: str | None) -> datetime | None:
    """An RFC 3339 date-time from the request (validated by the spec); naive means UTC."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def key_out(key, secret: str | None = None) -> dict:
    out = {
        "key_id": key.key_id,
        "owner": {"kind": key.principal.kind, "name": key.principal.name},
        "roles": key.roles,
        "imageset_ids": key.imageset_ids,
        "campaign_ids": key.campaign_ids,
        "description": key.description,
        "created_by": key.created_by.name if key.created_by else None,
        "date_created": key.date_created.isoformat(),
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
    }
    if secret is not None:
        out.update(apikey=key.key_id, apisecret=secret)
    return out


def me():
    caller = current_caller()
    return {"key_id": caller.key_id, "owner": {"kind": caller.owner_kind, "name": caller.owner_name},
            "roles": sorted(caller.roles), "campaign_ids": sorted(caller.campaign_ids),
            "imageset_ids": sorted(caller.imageset_ids)}


def list_keys(page=1, per_page=50, include_revoked=False):
    result = keys.list_keys(page=page, per_page=per_page, include_revoked=include_revoked)
    return {"pagination": result.pagination, "keys": [key_out(k) for k in result.items]}


def create_key(body):
    key, secret = keys.create_key(roles=body["roles"], email=body.get("email"), device=body.get("device"),
                                  expires_at=parse_datetime(body.get("expires_at")), description=body.get("description"),
                                  imageset_ids=body.get("imageset_ids"), campaign_ids=body.get("campaign_ids"),
                                  created_by=current_caller().principal_id)
    return key_out(key, secret), 201


def get_key(key_id):
    return key_out(keys.get_key(key_id))


def revoke_key(key_id):
    return key_out(keys.revoke_key(key_id, by=current_caller().key_id))


def rotate_key(key_id, grace_seconds=0):
    key, secret = keys.rotate_key(key_id, grace_seconds=grace_seconds, by=current_caller().key_id)
    return key_out(key, secret)


def erase(key_id):
    return key_out(keys.erase_owner(key_id))
