"""Copy a whole helpdesk database to another one (SQLite → PostgreSQL when a team outgrows one
machine), then prove the copy: the same rows in every table, by count and by checksum.

Rows are read and written through the models, so each database's own types (SQLite's text
times and 0/1 flags, PostgreSQL's timestamps and booleans) convert on the way; ids are kept,
so links, references (INC-42) and URLs stay the same. The target is migrated first and must
be empty: a copy never merges into live data. The search index is rebuilt on the target
rather than copied, since its form differs between the two databases.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import peewee

from helpdesk import schema
from helpdesk.db import database, open_database
from helpdesk.models import MODELS


class CopyError(Exception):
    """The copy cannot start or did not verify; the message says what to do. ``started``: rows
    were written to the target (which is then incomplete), else nothing was."""

    def __init__(self, message: str, *, started: bool = False) -> None:
        super().__init__(message)
        self.started = started


@dataclass
class TableCopy:
    table: str
    rows: int
    checksum: str


@dataclass
class CopyResult:
    tables: list[TableCopy] = field(default_factory=list)
    indexed: int = 0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def copy_database(source_url: str, target_url: str, *, batch: int = 1000,
                  progress: Callable[[str, int], None] | None = None) -> CopyResult:
    """Copy every table from ``source_url`` into the empty database at ``target_url``."""
    if source_url == target_url:
        raise CopyError("the source and the target are the same database")
    if source_url.startswith("sqlite:///") and not Path(unquote(source_url[len("sqlite:///"):])).is_file():
        raise CopyError(f"there is no source database at {source_url}")  # (opening it would make one)
    source, target = open_database(source_url), open_database(target_url)
    models = peewee.sort_models(MODELS)
    started = False
    try:
        with source.connection_context(), target.connection_context():
            if schema.pending(source):
                raise CopyError("the source database is not at the current schema: run "
                                "`helpdesk db upgrade` on it first")
            schema.upgrade(target)
            with source.bind_ctx(models):
                _check_target_empty(target, models)
                result = CopyResult()
                started = True
                for model in models:
                    rows, checksum = _copy_table(model, source, target, batch)
                    result.tables.append(TableCopy(model._meta.table_name, rows, checksum))
                    if progress:
                        progress(model._meta.table_name, rows)
                _reset_sequences(target, models)
                _verify(target, models, result)
            with _proxy(target):
                from helpdesk import search

                result.indexed = search.rebuild()
            return result
    except peewee.OperationalError as error:  # unreachable, missing, refused: said in one line
        raise CopyError(f"a database could not be used: {' '.join(str(error).split())}",
                        started=started) from None
    finally:
        for db in (source, target):
            db.close_all() if hasattr(db, "close_all") else db.close()  # a pool: every connection


def _check_target_empty(target: peewee.Database, models: list[type[peewee.Model]]) -> None:
    with target.bind_ctx(models):
        for model in models:
            if model.select().exists():
                raise CopyError(f"the target database already holds data ({model._meta.table_name}); "
                                "copy into a new, empty database")


def _key(model: type[peewee.Model]) -> peewee.Field:
    key = model._meta.primary_key
    if not isinstance(key, peewee.Field) or isinstance(key, peewee.CompositeKey):
        raise CopyError(f"{model._meta.table_name} has no single-column key to copy by")
    return key


def _read(model: type[peewee.Model], batch: int) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in key order, a batch at a time (keyset: constant cost per batch)."""
    key = _key(model)
    fields = model._meta.sorted_fields
    position = fields.index(key)
    last: Any = None
    while True:
        query = model.select(*fields).order_by(key).limit(batch)
        if last is not None:
            query = query.where(key > last)
        rows = list(query.tuples())
        if not rows:
            return
        yield rows
        last = rows[-1][position]


def _copy_table(model: type[peewee.Model], source: peewee.Database, target: peewee.Database,
                batch: int) -> tuple[int, str]:
    fields = model._meta.sorted_fields
    # A link to a row of the same table (an incident's parent) may point forward: write it as
    # empty first, then set it once every row exists, so no foreign key is ever dangling.
    later = [i for i, f in enumerate(fields)
             if isinstance(f, peewee.ForeignKeyField) and f.rel_model is model and f.null]
    digest, count, links = hashlib.sha256(), 0, []
    key_position = fields.index(_key(model))
    for rows in _read(model, batch):
        for row in rows:
            digest.update(_canonical(row))
        count += len(rows)
        if later:
            links += [(row[key_position], i, row[i]) for row in rows for i in later if row[i] is not None]
            rows = [tuple(None if i in later else v for i, v in enumerate(row)) for row in rows]
        with target.bind_ctx([model]), target.atomic():
            model.insert_many(rows, fields=fields).execute()
    if links:
        with target.bind_ctx([model]), target.atomic():
            for row_key, i, value in links:
                model.update({fields[i]: value}).where(_key(model) == row_key).execute()
    return count, digest.hexdigest()


def _canonical(row: tuple[Any, ...]) -> bytes:
    """One row as bytes that are equal whichever database it was read from."""
    def one(value: Any) -> str:
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=None).isoformat(timespec="microseconds")
        if isinstance(value, bytes | memoryview):
            return bytes(value).hex()
        return repr(value)
    return ("\x1f".join(one(v) for v in row) + "\x1e").encode()


def _reset_sequences(target: peewee.Database, models: list[type[peewee.Model]]) -> None:
    """PostgreSQL hands out ids from sequences: move each past the copied rows."""
    if not isinstance(target, peewee.PostgresqlDatabase):
        return
    for model in models:
        key = model._meta.primary_key
        if isinstance(key, peewee.AutoField):
            table, column = model._meta.table_name, key.column_name
            target.execute_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "  # noqa: S608 - model names
                f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")


def _verify(target: peewee.Database, models: list[type[peewee.Model]], result: CopyResult) -> None:
    expected = {t.table: t for t in result.tables}
    with target.bind_ctx(models):
        for model in models:
            digest, count = hashlib.sha256(), 0
            for rows in _read(model, 1000):
                count += len(rows)
                for row in rows:
                    digest.update(_canonical(row))
            copied = expected[model._meta.table_name]
            if (count, digest.hexdigest()) != (copied.rows, copied.checksum):
                raise CopyError(f"{model._meta.table_name}: the target holds {count} rows, the source "
                                f"{copied.rows}, or their contents differ; the target is incomplete — "
                                "drop it and copy again", started=True)


@contextmanager
def _proxy(target: peewee.Database) -> Iterator[None]:
    """Point the app's database handle at the target for code written against it."""
    previous = database.obj
    database.initialize(target)
    try:
        yield
    finally:
        database.initialize(previous)
