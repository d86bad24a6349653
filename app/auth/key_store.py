"""The one way to read a key: one query through psycopg's async pool, and the batched `last_used_at` writes.

Every request reads its key's row, so a revocation counts from the very next request on every process.
The pool lives on an event loop. The loop that serves the app (told by the ASGI lifespan: uvicorn, gunicorn)
runs the lookup itself, with no thread hop. Any other caller (Starlette's test client makes a loop per
request; a server run with lifespan off) has the same lookup run on the store's own loop thread, its pool
kept there. `last_used_at` is kept in memory and written by a task on the pool's loop once a minute, never
by a request.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.auth.policy import Caller

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 60

# Prepared per connection by psycopg (prepare=True): later lookups skip parsing and planning.
KEY_QUERY = """
    SELECT k.id, k.key_id, k.secret_hash, k.previous_secret_hash, k.previous_secret_valid_until,
           k.roles, k.expires_at, k.revoked_at, p.id, p.kind, p.name,
           CASE WHEN 'uploader' = ANY(k.roles)  -- scopes only for the roles that have them
                THEN ARRAY(SELECT s.imageset_id FROM api_key_image_sets s WHERE s.api_key_id = k.id)
                ELSE '{}'::int[] END,
           CASE WHEN 'labeler' = ANY(k.roles)
                THEN ARRAY(SELECT c.campaign_id FROM api_key_campaigns c WHERE c.api_key_id = k.id)
                ELSE '{}'::int[] END,
           k.legacy_secret_hash
    FROM api_keys k JOIN principals p ON p.id = k.principal_id
    WHERE k.key_id = %s"""

# A key imported from LabelAPI, after bcrypt accepted its secret once: our HMAC from now on (only if no other
# request has replaced the legacy hash meanwhile).
REPLACE_LEGACY_HASH = """
    UPDATE api_keys SET secret_hash = %s, legacy_secret_hash = NULL
    WHERE id = %s AND legacy_secret_hash = %s RETURNING id"""

IMAGE_IN_CAMPAIGNS_QUERY = \
    "SELECT EXISTS (SELECT 1 FROM campaign_images WHERE image_id = %s AND campaign_id = ANY(%s))"

LAST_USED_UPDATE = """
    UPDATE api_keys SET last_used_at = v.ts
    FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, ts)
    WHERE api_keys.id = v.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.ts)"""


class KeyRecord(NamedTuple):
    """A key's row as KEY_QUERY reads it (same order)."""

    id: int
    key_id: str
    secret_hash: bytes
    previous_secret_hash: bytes | None
    previous_secret_valid_until: datetime | None
    roles: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    principal_id: int
    owner_kind: str
    owner_name: str
    imageset_ids: list[int]
    campaign_ids: list[int]
    legacy_secret_hash: bytes | None  # LabelAPI's bcrypt hash of the secret, until its first good use

    def caller(self) -> Caller:
        return Caller(id=self.id, key_id=self.key_id, principal_id=self.principal_id, owner_kind=self.owner_kind,
                      owner_name=self.owner_name, roles=frozenset(self.roles),
                      imageset_ids=frozenset(self.imageset_ids), campaign_ids=frozenset(self.campaign_ids))


@dataclass
class _Home:
    """A pool on one loop, opened by one shared task (concurrent first requests await the same one),
    with the task that writes `last_used_at` from there."""

    pool: AsyncConnectionPool
    opening: asyncio.Task
    flusher: asyncio.Task


class KeyStore:
    def __init__(self, conninfo: str, *, timeout: float = 5.0, flush_seconds: float = FLUSH_SECONDS):
        """`timeout` bounds the wait for a pooled connection and for a new one: an outage is a fast 503."""
        self.conninfo, self.timeout, self.flush_seconds = conninfo, timeout, flush_seconds
        self._homes: dict[asyncio.AbstractEventLoop, _Home] = {}
        self._serving_loops: set[asyncio.AbstractEventLoop] = set()
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._own_loop_lock = threading.Lock()
        self._last_used: dict[int, datetime] = {}
        self._last_used_lock = threading.Lock()

    # --- reads ---------------------------------------------------------------------------------------

    async def find(self, key_id: str) -> KeyRecord | None:
        row = await self._at_home(self._fetch_one(KEY_QUERY, (key_id,)))
        return KeyRecord._make(row) if row else None

    async def replace_legacy_hash(self, key_pk: int, legacy_hash: bytes, secret_hash: bytes) -> None:
        await self._at_home(self._fetch_one(REPLACE_LEGACY_HASH, (secret_hash, key_pk, legacy_hash)))

    async def image_in_campaigns(self, image_id: int, campaign_ids: frozenset[int]) -> bool:
        return (await self._at_home(self._fetch_one(IMAGE_IN_CAMPAIGNS_QUERY, (image_id, list(campaign_ids)))))[0]

    def _at_home(self, work) -> Awaitable:
        """`work` on the running loop when it serves the app, else on the store's own loop thread."""
        if asyncio.get_running_loop() in self._serving_loops:
            return work
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._own()))

    async def _fetch_one(self, query: str, params: tuple):
        pool = await self._pool_here()
        for attempt in (1, 2):  # a connection dropped by a database restart: once more, on a fresh one
            try:
                async with pool.connection() as conn:
                    cursor = await conn.execute(query, params, prepare=True)
                    return await cursor.fetchone()
            except PoolTimeout:  # no connection within the timeout: waiting again would double it
                raise
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                await pool.check()  # drop every broken idle connection, not just this one

    async def _pool_here(self) -> AsyncConnectionPool:
        """This loop's pool; an open that failed (database down) is forgotten, so the next request tries again."""
        loop = asyncio.get_running_loop()
        home = self._homes.get(loop)
        if home is None:
            pool = AsyncConnectionPool(
                self.conninfo, min_size=1, max_size=10, open=False, timeout=self.timeout,
                kwargs={"autocommit": True, "application_name": "label-store-auth",
                        "connect_timeout": max(1, round(self.timeout))})
            home = self._homes[loop] = _Home(pool, loop.create_task(pool.open(wait=True, timeout=self.timeout)),
                                             loop.create_task(self._flush_every(self.flush_seconds)))
        try:
            await asyncio.shield(home.opening)  # done after the first time: costs nothing
        except Exception:
            await self._close_home(loop, home)
            raise
        return home.pool

    async def _close_home(self, loop, home: _Home) -> None:
        if self._homes.get(loop) is home:
            del self._homes[loop]
            home.flusher.cancel()
            await home.pool.close()

    def _own(self) -> asyncio.AbstractEventLoop:
        """The store's own loop, on a daemon thread started at first need (after any fork: a request)."""
        if self._own_loop is None:
            with self._own_loop_lock:
                if self._own_loop is None:
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="label-store-keys", daemon=True).start()
                    self._own_loop = loop
        return self._own_loop

    @asynccontextmanager
    async def serving(self):
        """For the ASGI lifespan: lookups run on this loop while it serves; at shutdown the last `last_used_at`
        times are written and the pool closed."""
        loop = asyncio.get_running_loop()
        self._serving_loops.add(loop)
        try:
            yield
        finally:
            self._serving_loops.discard(loop)
            await self.flush()
            if (home := self._homes.get(loop)) is not None:
                await self._close_home(loop, home)

    # --- last used -----------------------------------------------------------------------------------

    def touch(self, key_pk: int, now: datetime) -> None:
        with self._last_used_lock:
            self._last_used[key_pk] = now

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.flush()

    async def flush(self) -> None:
        """Write the `last_used_at` times gathered since the last flush; kept for the next one on failure."""
        with self._last_used_lock:
            pending, self._last_used = self._last_used, {}
        if not pending:
            return
        try:
            pool = await self._pool_here()
            async with pool.connection() as conn:
                await conn.execute(LAST_USED_UPDATE, (list(pending), list(pending.values())))
        except Exception:  # losing a last-used time is harmless; failing anything else over it is not
            logger.warning("could not record last_used_at", exc_info=True)
            with self._last_used_lock:
                for key_pk, used in pending.items():
                    self._last_used.setdefault(key_pk, used)  # a newer use, recorded meanwhile, wins

    def flush_now(self) -> None:
        """`flush` from synchronous code (a command, a test), on the store's own loop."""
        asyncio.run_coroutine_threadsafe(self.flush(), self._own()).result()
