"""One transaction per request and per job step: the edge commits, use cases only flush.

`unit_of_work()` is the edge. Handlers run inside one (app.api's resolver wraps every operation); jobs
open one per step they want kept (a finishing batch, an export). A use case that reaches outside the
database before the commit (creates a container, say) registers how to undo it with `undo_on_failure`,
so a transaction that fails leaves nothing behind.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.extensions import db

logger = logging.getLogger(__name__)

_UNDO = "label_store.undo"


@contextmanager
def unit_of_work() -> Iterator[None]:
    session = db.session
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        for undo in reversed(session.info.pop(_UNDO, [])):
            try:
                undo()
            except Exception as exc:  # the original failure is what the caller must see
                logger.warning("could not undo a side effect of a failed transaction", extra={"reason": str(exc)[:200]})
        raise
    finally:
        session.info.pop(_UNDO, None)


def undo_on_failure(action: Callable[[], None]) -> None:
    """Run `action` if the current unit of work rolls back instead of committing."""
    db.session.info.setdefault(_UNDO, []).append(action)
