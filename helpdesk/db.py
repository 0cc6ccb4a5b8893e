"""The database: declared at import as a proxy, bound to a real database at start-up.

SQLite (the default) runs in WAL mode with a busy timeout; write transactions
take the write lock up front (``BEGIN IMMEDIATE``) so concurrent writers wait
instead of failing half-way. PostgreSQL uses a connection pool over psycopg 3.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
from playhouse.pool import PooledPostgresqlDatabase

database = peewee.DatabaseProxy()
logger = logging.getLogger(__name__)

SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),
    ("busy_timeout", 10000),
    ("foreign_keys", 1),
    ("synchronous", "normal"),
)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


def open_database(url: str) -> peewee.Database:
    """Create (but do not connect) the peewee database a URL names."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = Path(unquote(url[len("sqlite:///") :]))
        path.parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, timeout=10)
    if parts.scheme in {"postgres", "postgresql"}:
        options = dict(parse_qsl(parts.query))
        return PooledPostgresqlDatabase(
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname,
            port=parts.port,
            max_connections=int(options.pop("max_connections", 32)),
            stale_timeout=300,
            timeout=10,
            **options,
        )
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r}")


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


_local = threading.local()


def _pending() -> list[Callable[[], None]]:
    if not hasattr(_local, "after_commit"):
        _local.after_commit = []
        _local.depth = 0
    return _local.after_commit


@contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction for a state change; nested calls join the outer one.

    Callbacks registered with :func:`after_commit` run once the outermost
    transaction has committed, and are dropped if it rolls back.
    """
    pending = _pending()
    outermost = _local.depth == 0
    mark = len(pending)
    _local.depth += 1
    try:
        if outermost and is_sqlite():
            context = database.atomic("IMMEDIATE")
        else:
            context = database.atomic()
        with context:
            yield
    except BaseException:
        del pending[mark:]  # this (sub)transaction rolled back: so do its callbacks
        raise
    finally:
        _local.depth -= 1
    if outermost:
        callbacks = list(pending)
        pending.clear()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the change is committed: a failing follow-up must not undo the answer
                logger.exception("after-commit callback failed")


def after_commit(callback: Callable[[], None]) -> None:
    """Run ``callback`` after the current write transaction commits."""
    pending = _pending()
    if _local.depth == 0:
        callback()
    else:
        pending.append(callback)


def for_update(query: peewee.ModelSelect) -> peewee.ModelSelect:
    """Row locks on PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises writers)."""
    return query if is_sqlite() else query.for_update()
