"""Who may call what: the caller a key stands for, the `x-roles` rules of each operation, and the decision.

An operation lists its rules in the spec as `x-roles`: `role` (any key with that role may call) or
`role:path_parameter` (only for the values of that parameter the key is bound to).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from app.errors import Forbidden, NotFound


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


# Who the operation running in this context acts for: set by the API's edge (app.api.resolver) around each
# handler, None in jobs and commands. Services read it here, never from the web framework.
acting_caller: ContextVar[Caller | None] = ContextVar("acting_caller", default=None)


@dataclass(frozen=True)
class Rule:
    """`role` may call; with `scope`, only for the path parameter's values the key is bound to."""

    role: str
    scope: str | None = None  # a path parameter: imageset_id (uploader), campaign_id or image_id (labeler)


ImageInCampaigns = Callable[[int, frozenset[int]], Awaitable[bool]]
_NOUNS = {"imageset_id": "image set", "campaign_id": "campaign", "image_id": "image"}


def roles_from_spec(spec: dict) -> dict[str, tuple[Rule, ...]]:
    """operationId -> rules, from each operation's `x-roles`."""
    table = {}
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "operationId" in operation:
                table[operation["operationId"]] = tuple(
                    Rule(*entry.split(":", 1)) if ":" in entry else Rule(entry) for entry in operation.get("x-roles", ()))
    return table


def is_scoped(rules: tuple[Rule, ...]) -> bool:
    return any(rule.scope for rule in rules)


async def in_scope(caller: Caller, scope: str, value: int, image_in_campaigns: ImageInCampaigns) -> bool:
    if scope == "imageset_id":
        return value in caller.imageset_ids
    if scope == "campaign_id":
        return value in caller.campaign_ids
    if scope == "image_id":  # an image of one of the labeler's campaigns: the only rule that reads the database
        return bool(caller.campaign_ids) and await image_in_campaigns(value, caller.campaign_ids)
    raise ValueError(f"unknown scope {scope!r} in x-roles")


async def authorize(caller: Caller, rules: tuple[Rule, ...], path_params: dict,
                    image_in_campaigns: ImageInCampaigns) -> None:
    """403 when no rule names one of the caller's roles; 404 when only a scoped rule does and the key is not
    bound to the thing named, so a scoped key cannot even learn that others' things exist."""
    scoped_miss = None
    for rule in rules:
        if rule.role not in caller.roles:
            continue
        if rule.scope is None:
            return
        value = str(path_params.get(rule.scope, ""))
        if value.isdigit() and await in_scope(caller, rule.scope, int(value), image_in_campaigns):
            return
        scoped_miss = f"no {_NOUNS[rule.scope]} {value}"
    if scoped_miss:
        raise NotFound(scoped_miss)
    raise Forbidden(f"This key's roles ({', '.join(sorted(caller.roles))}) do not allow this call.")
