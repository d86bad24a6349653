"""API-key authentication and role checks: the one place where access is decided.

Connexion's security middleware calls `authenticate` before any handler runs, with both headers of the
pair declared as one security requirement in the spec. Secrets are high-entropy random strings, so a
keyed fast hash (HMAC-SHA256 with a server-side pepper) compared in constant time is enough: no bcrypt,
no per-request cost worth measuring. Every request reads the key's row, so a revocation counts from the
very next request on every process; `last_used_at` is written in batches, at most once a minute.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import connexion
from connexion.security import ApiKeySecurityHandler
from connexion.utils import inspect_function_arguments
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from app.errors import Forbidden, NotFound, Unauthorized

logger = logging.getLogger(__name__)

KEY_HEADER, SECRET_HEADER = "Authentication-Key", "Authentication-Secret"
BOTH_HEADERS = f"Send your key pair in the {KEY_HEADER} and {SECRET_HEADER} headers."
_DUMMY_HASH = b"\0" * 32
_LAST_USED_FLUSH_SECONDS = 60


@dataclass(frozen=True)
class Caller:
    """The authenticated key behind a request, as handlers and services see it."""

    id: int
    key_id: str
    principal_id: int
    owner_kind: str
    owner_name: str
    roles: frozenset[str]
    campaign_ids: frozenset[int] = frozenset()
    imageset_ids: frozenset[int] = frozenset()

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


def new_key_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "lsk_" + "".join(secrets.choice(alphabet) for _ in range(20))


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def hash_secret(secret: str, pepper: str) -> bytes:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).digest()


@dataclass
class Authenticator:
    engine: object
    pepper: str
    roles_by_operation: dict[str, tuple["Rule", ...]]
    db_timeout: float = 5.0  # seconds to get a connection: a database outage fails fast (503), never hangs
    _last_used: dict[int, datetime] = field(default_factory=dict)
    _last_flush: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _async_pool: object = None
    _pool_loop: object = None
    _pool_opening: object = None

    _COLUMNS = ("id", "key_id", "secret_hash", "previous_secret_hash", "previous_secret_valid_until", "roles",
                "expires_at", "revoked_at", "principal_id", "kind", "name", "imageset_ids", "campaign_ids")
    # Prepared once per connection: the lookup then skips parsing and planning.
    _PREPARE = """
        PREPARE label_store_key_lookup(text) AS
        SELECT k.id, k.key_id, k.secret_hash, k.previous_secret_hash, k.previous_secret_valid_until,
               k.roles, k.expires_at, k.revoked_at, p.id, p.kind, p.name,
               CASE WHEN 'uploader' = ANY(k.roles)  -- scopes only for the roles that have them
                    THEN ARRAY(SELECT s.imageset_id FROM api_key_image_sets s WHERE s.api_key_id = k.id)
                    ELSE '{}'::int[] END,
               CASE WHEN 'labeler' = ANY(k.roles)
                    THEN ARRAY(SELECT c.campaign_id FROM api_key_campaigns c WHERE c.api_key_id = k.id)
                    ELSE '{}'::int[] END
        FROM api_keys k JOIN principals p ON p.id = k.principal_id
        WHERE k.key_id = $1"""

    _SELECT = _PREPARE.split(" AS\n", 1)[1].replace("$1", "%s")

    def _row(self, key_id: str) -> dict | None:
        """One indexed read on an autocommit connection of the auth engine (no pre-ping, no transaction)."""
        for attempt in (1, 2):
            conn = self.engine.raw_connection()
            try:
                with conn.cursor() as cursor:
                    if "key_lookup_prepared" not in conn.info:
                        cursor.execute(self._PREPARE)
                        conn.info["key_lookup_prepared"] = True
                    cursor.execute("EXECUTE label_store_key_lookup(%s)", (key_id,))
                    row = cursor.fetchone()
                return dict(zip(self._COLUMNS, row)) if row else None
            except self.engine.dialect.loaded_dbapi.Error:
                conn.invalidate()  # a dropped connection or a stale prepared plan: retry once on a fresh one
                if attempt == 2:
                    raise
                self.engine.dispose()  # after a database restart every pooled connection is dead
            finally:
                conn.close()

    def check(self, key_id: str, secret: str | None, operation_id: str | None,
              path_params: dict | None = None) -> Caller:
        if not secret:
            raise Unauthorized(f"{SECRET_HEADER} header missing. {BOTH_HEADERS}")
        return self._decide(self._row(key_id[:64]), secret, operation_id, path_params)

    async def check_async(self, key_id: str, secret: str | None, operation_id: str | None,
                          path_params: dict | None = None) -> Caller:
        """The same check, its row read on the event loop: no hop to a thread (a quarter of a millisecond)."""
        pool = await self._pool_for_this_loop()
        if pool is None:  # another event loop than the pool's (Starlette's test client makes one per request)
            return await run_in_threadpool(self.check, key_id, secret, operation_id, path_params)
        if not secret:
            raise Unauthorized(f"{SECRET_HEADER} header missing. {BOTH_HEADERS}")
        import psycopg

        for attempt in (1, 2):  # a connection dropped by a database restart: once more, on a fresh one
            try:
                async with pool.connection() as conn:
                    cursor = await conn.execute(self._SELECT, (key_id[:64],), prepare=True)
                    found = await cursor.fetchone()
                break
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                await pool.check()  # drop every broken idle connection, not just this one
        row = dict(zip(self._COLUMNS, found)) if found else None
        rules = self.roles_by_operation.get(operation_id or "", ())
        if any(rule.scope == "image_id" for rule in rules):  # that scope reads the database: not on the loop
            return await run_in_threadpool(self._decide, row, secret, operation_id, path_params)
        return self._decide(row, secret, operation_id, path_params)

    async def _pool_for_this_loop(self):
        """The async pool, opened once for this loop by one shared task (concurrent first requests await the
        same one); an open that failed (database down) is forgotten, so the next request tries again."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._async_pool is None:
            from psycopg_pool import AsyncConnectionPool

            url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._pool_loop = loop
            self._async_pool = AsyncConnectionPool(url, min_size=1, max_size=10, open=False, timeout=self.db_timeout,
                                                   kwargs={"autocommit": True, "application_name": "label-store-auth",
                                                           "connect_timeout": max(1, round(self.db_timeout))})
            self._pool_opening = loop.create_task(self._async_pool.open(wait=True, timeout=self.db_timeout))
        if self._pool_loop is not loop:
            return None
        pool = self._async_pool
        try:
            await asyncio.shield(self._pool_opening)  # done after the first time: costs nothing
        except Exception:
            if self._async_pool is pool:
                self._async_pool = None
                await pool.close()
            raise
        return pool

    def _decide(self, row: dict | None, secret: str, operation_id: str | None, path_params: dict | None) -> Caller:
        offered = hash_secret(secret, self.pepper)
        now = datetime.now(timezone.utc)
        # Same work whether the key exists or not, so timing tells nothing about key ids.
        matches = hmac.compare_digest(offered, row["secret_hash"] if row else _DUMMY_HASH)
        if row and not matches and row["previous_secret_hash"] and row["previous_secret_valid_until"]:
            matches = hmac.compare_digest(offered, row["previous_secret_hash"]) and now < row[
                "previous_secret_valid_until"]
        if not row or not matches:
            raise Unauthorized(f"Unknown key or wrong secret. {BOTH_HEADERS}")
        if row["revoked_at"] is not None:
            raise Unauthorized(f"This key was revoked. {BOTH_HEADERS}")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise Unauthorized(f"This key expired. {BOTH_HEADERS}")
        caller = Caller(id=row["id"], key_id=row["key_id"], principal_id=row["principal_id"],
                        owner_kind=row["kind"], owner_name=row["name"], roles=frozenset(row["roles"]),
                        imageset_ids=frozenset(row["imageset_ids"]), campaign_ids=frozenset(row["campaign_ids"]))
        authorize(caller, self.roles_by_operation.get(operation_id or "", ()), path_params or {},
                  self.image_in_campaigns)
        self._touch(caller.id, now)
        return caller

    def image_in_campaigns(self, image_id: int, campaign_ids: frozenset[int]) -> bool:
        if not campaign_ids:
            return False
        conn = self.engine.raw_connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT EXISTS (SELECT 1 FROM campaign_images WHERE image_id = %s "
                               "AND campaign_id = ANY(%s))", (image_id, list(campaign_ids)))
                return cursor.fetchone()[0]
        finally:
            conn.close()

    def _touch(self, key_pk: int, now: datetime) -> None:
        with self._lock:
            self._last_used[key_pk] = now
            due = time.monotonic() - self._last_flush >= _LAST_USED_FLUSH_SECONDS
        if due:
            self.flush_last_used()

    def flush_last_used(self) -> None:
        with self._lock:
            pending, self._last_used = self._last_used, {}
            self._last_flush = time.monotonic()
        if not pending:
            return
        try:
            with self.engine.connect() as conn:
                conn.execute(text("""
                    UPDATE api_keys SET last_used_at = v.ts
                    FROM unnest(CAST(:ids AS bigint[]), CAST(:ts AS timestamptz[])) AS v(id, ts)
                    WHERE api_keys.id = v.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.ts)"""),
                    {"ids": list(pending), "ts": list(pending.values())})
        except Exception:  # losing a last-used time is harmless; failing the request is not
            logger.warning("could not record last_used_at", exc_info=True)


@dataclass(frozen=True)
class Rule:
    """`role` may call; with `scope`, only for the path parameter's values the key is bound to."""

    role: str
    scope: str | None = None  # a path parameter: imageset_id (uploader) or campaign_id (labeler)


_NOUNS = {"imageset_id": "image set", "campaign_id": "campaign", "image_id": "image"}


def in_scope(caller: Caller, scope: str, value: int, image_in_campaigns) -> bool:
    if scope == "imageset_id":
        return value in caller.imageset_ids
    if scope == "campaign_id":
        return value in caller.campaign_ids
    if scope == "image_id":  # an image of one of the labeler's campaigns
        return image_in_campaigns(value, caller.campaign_ids)
    raise ValueError(f"unknown scope {scope!r} in x-roles")


def authorize(caller: Caller, rules: tuple[Rule, ...], path_params: dict, image_in_campaigns=None) -> None:
    """403 when no rule names one of the caller's roles; 404 when only a scoped rule does and the key is not
    bound to the thing named, so a scoped key cannot even learn that others' things exist."""
    scoped_miss = None
    for rule in rules:
        if rule.role not in caller.roles:
            continue
        if rule.scope is None:
            return
        value = str(path_params.get(rule.scope, ""))
        if value.isdigit() and in_scope(caller, rule.scope, int(value), image_in_campaigns):
            return
        scoped_miss = f"no {_NOUNS[rule.scope]} {value}"
    if scoped_miss:
        raise NotFound(scoped_miss)
    raise Forbidden(f"This key's roles ({', '.join(sorted(caller.roles))}) do not allow this call.")


def roles_from_spec(spec: dict) -> dict[str, tuple[Rule, ...]]:
    """operationId -> rules, from each operation's `x-roles` (`role` or `role:path_parameter`)."""
    table = {}
    for path_item in spec.get("paths", {}).values():
        for method, operation in path_item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                table[operation["operationId"]] = tuple(
                    Rule(*entry.split(":", 1)) if ":" in entry else Rule(entry) for entry in operation.get("x-roles", ()))
    return table


async def authenticate(api_key: str, request) -> dict:
    """Connexion apiKey info function for the Authentication-Key scheme; checks the whole pair."""
    authenticator: Authenticator = request.scope["label_store"].authenticator
    operation_id = ((request.scope.get("extensions") or {}).get("connexion_routing") or {}).get("operation_id")
    scoped = any(rule.scope for rule in authenticator.roles_by_operation.get(operation_id or "", ()))
    caller = await authenticator.check_async(api_key, request.headers.get(SECRET_HEADER), operation_id,
                                             request.path_params if scoped else {})  # parsed only when needed
    return {"sub": caller.key_id, "caller": caller}


def secret_present(api_key: str) -> dict:
    """The Authentication-Secret scheme: checked together with the key in `authenticate`."""
    return {}


def current_caller() -> Caller:
    return connexion.context.context["token_info"]["AuthenticationKey"]["caller"]


class _SignatureCachingApiKeyHandler(ApiKeySecurityHandler):
    """Connexion's apiKey handler, minus an inspect.signature() of our function four times per request
    (~0.15 ms): the function's signature never changes."""

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _accepts_kwarg(func, keyword: str) -> bool:
        arguments, has_kwargs = inspect_function_arguments(func)
        return has_kwargs or keyword in arguments


SECURITY_MAP = {"apiKey": _SignatureCachingApiKeyHandler}
