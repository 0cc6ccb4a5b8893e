"""The one source of "now" (UTC, naive as stored), so tests and demo data can move time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

_source: Callable[[], dt.datetime] | None = None


def now() -> dt.datetime:
    if _source is not None:
        return _source()
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def set_source(source: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (``None`` restores real time)."""
    global _source
    _source = source
