"""API keys: creation, listing, revocation, rotation, and the bootstrap admin."""
from __future__ import annotations

import hmac
import json
import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, text

from app.auth.keys import hash_secret, new_key_id, new_secret
from app.errors import Conflict, NotFound, Unprocessable
from app.extensions import db
from app.models import ApiKey, ApiKeyCampaign, ApiKeyImageSet, Campaign, ImageSet, Principal
from app.services import audit
from app.services.pagination import Page, paginate
from app.state import app_state
from app.webhooks import service as webhooks

logger = logging.getLogger(__name__)


def _pepper() -> str:
    return app_state().settings.api_key_pepper.get_secret_value()


def principal_for(*, email: str | None = None, device: str | None = None, field: str | None = None) -> Principal:
    """Find or create the user (by email, case-insensitive) or device (by name); `field` names the request
    field in a refusal (default: `email` or `device`)."""
    if bool(email) == bool(device):
        raise Unprocessable("give exactly one of `email` (a user) or `device` (a device name)",
                            field="email" if email else "device")
    kind, name = ("user", email.strip().lower()) if email else ("device", device.strip())
    principal = db.session.scalar(select(Principal).where(Principal.name == name))
    if principal is None:
        principal = Principal(kind=kind, name=name)
        db.session.add(principal)
        db.session.flush()
    elif principal.kind != kind:
        raise Conflict(f"{name!r} is already registered as a {principal.kind}",
                       field=field or ("email" if email else "device"))
    return principal


def holds_other_roles(principal: Principal, role: str) -> bool:
    """Whether the principal holds, or ever held, a key with a role beyond `role`."""
    return db.session.scalar(select(ApiKey.id).where(
        ApiKey.principal_id == principal.id, ~ApiKey.roles.contained_by([role])).limit(1)) is not None


def _imageset_links(roles: list[str], imageset_ids: list[int] | None) -> list[ApiKeyImageSet]:
    if ("uploader" in roles) != bool(imageset_ids):
        raise Unprocessable("the uploader role needs imageset_ids, and imageset_ids need the uploader role",
                            field="imageset_ids")
    return [ApiKeyImageSet(imageset_id=i) for i in _existing(ImageSet, imageset_ids, "image set", "imageset_ids")]


def _campaign_links(roles: list[str], campaign_ids: list[int] | None) -> list[ApiKeyCampaign]:
    if campaign_ids and "labeler" not in roles:
        raise Unprocessable("campaign_ids need the labeler role", field="campaign_ids")
    return [ApiKeyCampaign(campaign_id=i) for i in _existing(Campaign, campaign_ids, "campaign", "campaign_ids")]


def _existing(model, ids: list[int] | None, noun: str, field: str) -> list[int]:
    """The distinct ids, sorted, each of an existing row; else 422 naming the first missing one."""
    ids = sorted(set(ids or ()))
    found = set(db.session.scalars(select(model.id).where(model.id.in_(ids)))) if ids else set()
    missing = [i for i in ids if i not in found]
    if missing:
        raise Unprocessable(f"no {noun} {missing[0]}", field=field)
    return ids


def create_key(*, roles: list[str], email: str | None = None, device: str | None = None,
               expires_at: datetime | None = None, description: str | None = None,
               imageset_ids: list[int] | None = None, campaign_ids: list[int] | None = None,
               key_id: str | None = None, secret: str | None = None,
               created_by: int | None = None) -> tuple[ApiKey, str]:
    """A new key pair; the secret is returned here and never stored. `created_by`: the principal minting it
    (None: the service itself)."""
    if expires_at is not None and expires_at <= datetime.now(timezone.utc):
        raise Unprocessable("expires_at must be in the future", field="expires_at")
    links = _imageset_links(roles, imageset_ids)
    campaign_links = _campaign_links(roles, campaign_ids)
    principal = principal_for(email=email, device=device)
    secret = secret or new_secret()
    key = ApiKey(key_id=key_id or new_key_id(), secret_hash=hash_secret(secret, _pepper()), principal=principal,
                 roles=sorted(set(roles)), expires_at=expires_at, description=description, imageset_links=links,
                 campaign_links=campaign_links, created_by_id=created_by)
    db.session.add(key)
    db.session.flush()
    audit.record("create", "api_key", key.key_id, None, {
        "owner": principal.name, "roles": key.roles, "imageset_ids": key.imageset_ids,
        "campaign_ids": key.campaign_ids, "expires_at": expires_at, "description": description})
    logger.info("api key created", extra={"key_id": key.key_id, "roles": key.roles, "created_by_id": created_by})
    return key, secret


def list_keys(*, page: int, per_page: int, include_revoked: bool = False) -> Page:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return paginate(query, page, per_page)


def get_key(key_id: str, *, for_update: bool = False) -> ApiKey:
    query = select(ApiKey).where(ApiKey.key_id == key_id)
    key = db.session.scalar(query.with_for_update(of=ApiKey) if for_update else query)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    return key


def revoke_key(key_id: str, *, by: str) -> ApiKey:
    key = get_key(key_id, for_update=True)
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is already revoked")
    key.revoked_at = datetime.now(timezone.utc)
    audit.record("revoke", "api_key", key_id, {"revoked_at": None}, {"revoked_at": key.revoked_at})
    webhooks.emit("key.revoked", {"key_id": key_id, "revoked_at": key.revoked_at})
    logger.info("api key revoked", extra={"key_id": key_id, "by": by})
    return key


def rotate_key(key_id: str, *, grace_seconds: int = 0, by: str) -> tuple[ApiKey, str]:
    key = get_key(key_id, for_update=True)
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is revoked; create a new one instead")
    secret = new_secret()
    if grace_seconds > 0:
        key.previous_secret_hash = key.secret_hash
        key.previous_secret_valid_until = datetime.now(timezone.utc) + timedelta(seconds=grace_seconds)
    else:
        key.previous_secret_hash = key.previous_secret_valid_until = None
    key.secret_hash = hash_secret(secret, _pepper())
    key.legacy_secret_hash = None  # a LabelAPI key's old secret ends now: its bcrypt hash has no grace
    audit.record("rotate", "api_key", key_id, None, {"grace_seconds": grace_seconds,
                                                     "previous_secret_valid_until": key.previous_secret_valid_until})
    logger.info("api key rotated", extra={"key_id": key_id, "grace_seconds": grace_seconds, "by": by})
    return key, secret


def pseudonym(name: str) -> str:
    """The stable stand-in for an erased owner: the same person erased twice gets the same one, and nobody
    without the pepper can tell whose it is."""
    return "erased-" + hmac.new(_pepper().encode(), name.encode(), "sha256").hexdigest()[:12]


def erase_owner(key_id: str) -> ApiKey:
    """Erase the person behind a key (a partner leaving, a GDPR request): every key of theirs is revoked, and
    their email becomes a pseudonym in keys, label revisions and objects, and the audit trail. Labels stay."""
    key = get_key(key_id, for_update=True)
    principal = db.session.scalar(select(Principal).where(Principal.id == key.principal_id).with_for_update())
    name, alias = principal.name, pseudonym(principal.name)
    if name.startswith("erased-"):
        raise Conflict(f"the owner of API key {key_id} is already erased")
    now = datetime.now(timezone.utc)
    revoked = list(db.session.scalars(select(ApiKey.key_id).where(
        ApiKey.principal_id == principal.id, ApiKey.revoked_at.is_(None)).with_for_update()))
    db.session.execute(ApiKey.__table__.update().where(ApiKey.key_id.in_(revoked)).values(revoked_at=now))
    for revoked_key in revoked:  # ids only: no event holds the person's email
        webhooks.emit("key.revoked", {"key_id": revoked_key, "revoked_at": now})
    principal.name = alias
    for statement in ("UPDATE label_revisions SET submitted_by = :alias WHERE submitted_by = :name",
                      "UPDATE objects SET added_by = :alias WHERE added_by = :name",
                      "UPDATE audit SET actor = :alias WHERE actor = :name"):
        db.session.execute(text(statement), {"alias": alias, "name": name})
    # before/after hold the email as a JSON string wherever it was (a key's owner, a campaign's labeler)
    db.session.execute(text(
        "UPDATE audit SET before = CAST(replace(CAST(before AS text), :quoted, :alias_quoted) AS jsonb), "
        "after = CAST(replace(CAST(after AS text), :quoted, :alias_quoted) AS jsonb) "
        "WHERE strpos(CAST(before AS text), :quoted) > 0 OR strpos(CAST(after AS text), :quoted) > 0"),
        {"quoted": json.dumps(name), "alias_quoted": json.dumps(alias)})
    audit.record("erase", "api_key", key_id, None, {"owner": alias, "revoked": revoked})
    db.session.flush()
    db.session.refresh(key)
    logger.info("api key owner erased", extra={"key_id": key_id, "revoked": len(revoked)})
    return key


def admin_exists() -> bool:
    return db.session.scalar(select(ApiKey.id).where(ApiKey.roles.any("admin"), usable()).limit(1)) is not None


def usable():
    """The SQL condition of a key that can still authenticate: not revoked, not expired."""
    return ApiKey.revoked_at.is_(None) & (ApiKey.expires_at.is_(None) | (ApiKey.expires_at > func.now()))


def bootstrap_admin(*, email: str, key_id: str | None = None, secret: str | None = None) -> tuple[ApiKey, str] | None:
    """Create an admin key unless a usable admin key exists; None when nothing was created."""
    db.session.execute(select(db.func.pg_advisory_xact_lock(0x4C53_0001)))  # one bootstrap at a time
    if admin_exists():
        return None
    if key_id is not None and db.session.scalar(select(ApiKey.id).where(ApiKey.key_id == key_id)):
        raise Conflict(f"API key {key_id} exists but is not a usable admin key")
    return create_key(roles=["admin"], email=email, key_id=key_id, secret=secret,
                      description="bootstrap admin")
