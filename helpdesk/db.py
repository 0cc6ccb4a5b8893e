"""The database: declared at import as a proxy, bound to a real database at start-up.

SQLite (the default) runs in WAL mode with a busy timeout; write transactions
take the write lock up front (``BEGIN IMMEDIATE``) so concurrent writers wait
instead of failing half-way. PostgreSQL uses a connection pool over psycopg 3.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
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

    def save(self, force_insert: bool = False, only: Any = None) -> int:
        """Refuse over-long text on every database alike (SQLite does not enforce lengths),
        with a message naming the field instead of a database error. A new row goes in
        through an INSERT compiled once per set of columns (:func:`_insert`)."""
        from helpdesk.errors import DomainError

        for name, column in self._meta.fields.items():
            value = self.__data__.get(name)
            limit = getattr(column, "max_length", None)
            if isinstance(column, peewee.CharField) and isinstance(value, str) and limit \
                    and len(value) > limit:
                label = name.replace("_", " ").capitalize()
                raise DomainError(f"{label} is limited to {limit} characters.")
        meta = self._meta
        if only is None and meta.primary_key is not False and not meta.composite_key \
                and (force_insert or self._pk is None) and meta.database is database:
            return _insert(self)  # (a model bound elsewhere, e.g. by bind_ctx, keeps peewee's path)
        return super().save(force_insert=force_insert, only=only)


def _insert(row: BaseModel) -> int:
    """What peewee's ``save`` does for a new row, through :class:`Statement`: building the
    INSERT cost ~150–300 µs a row, and a create writes a dozen rows in its transaction."""
    meta = row._meta
    data = row.__data__.copy()
    row._populate_unsaved_relations(data)
    pk = meta.primary_key
    if meta.auto_increment and row._pk is None:
        data.pop(pk.name, None)
    # A default peewee would add while building the INSERT must be a value here, or it would
    # be compiled into the statement once and repeated for every later row.
    for field, default in meta.defaults.items():
        if field.name not in data and field is not pk:
            data[field.name] = default() if callable(default) else default
    names = tuple(name for name in meta.sorted_field_names if name in data)  # one order, one statement
    key = (type(row), names)
    statement = _INSERTS.get(key)
    if statement is None:
        fields = [meta.fields[name] for name in names]
        model = type(row)
        statement = Statement(lambda *slots: model.insert(dict(zip(fields, slots, strict=True))))
        statement.fields = fields  # type: ignore[attr-defined]
        _INSERTS[key] = statement  # shared only once complete
    values = [field.db_value(data[field.name]) for field in statement.fields]  # type: ignore[attr-defined]
    cursor = statement.execute(*values)
    if meta.auto_increment and row._pk is None:
        if database.obj.returning_clause:
            row._pk = cursor.fetchone()[0]
        else:
            row._pk = cursor.lastrowid
        row._dirty.discard(pk.name)
    row._dirty -= set(names)
    return 1


_INSERTS: dict[tuple[type, tuple[str, ...]], Statement] = {}


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class KeptSqliteDatabase(peewee.SqliteDatabase):
    """SQLite whose connection each thread keeps from one request to the next (see
    :func:`release`): opening a WAL database and setting its pragmas costs about 0.7 ms,
    a fifth of a small page.

    A write transaction waits for the write lock by polling rather than through SQLite's
    busy handler, which sleeps 10, 25, then 100 ms at a time: with two processes writing, a
    lock held for 5 ms made the other wait 50–500 ms. It polls every ~0.2 ms for the first
    50 ms (a write transaction holds the lock for a few milliseconds, and a waiter that
    sleeps longer leaves the lock idle: two web workers logging incidents served fewer than
    one did while the polls grew to 4 ms), then every ~2 ms so a long wait costs no CPU.
    A blocking ``flock`` handoff was measured too and was no faster.

    Threads of one process (``helpdesk serve`` runs waitress threads) first queue on a
    process-wide lock, which hands over at once and costs nothing while waiting; only its
    holder polls SQLite, for writers in other processes. Without it, eight threads waiting
    to write would poll thousands of times a second, each poll taking the GIL from the
    thread that holds the write lock.
    """

    #: Poll every ~FAST_POLL seconds for the first FAST_FOR seconds of a wait, then every ~SLOW_POLL.
    FAST_POLL, FAST_FOR, SLOW_POLL = 0.0002, 0.05, 0.002

    def __init__(self, *args: Any, busy_seconds: float = 10, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SQLite's own LOWER() folds only A-Z: "ZOË" would never match "zoë" in a
        # case-insensitive lookup (a requester, team or agent by name), as it does on
        # PostgreSQL. No index is built on LOWER(), so replacing it changes no stored order.
        self.register_function(_lower, "lower", 1, deterministic=True)
        self.busy_seconds = busy_seconds
        self.writer = threading.Lock()  # this process's writing thread
        self._writing = threading.local()

    def begin(self, lock_type: str | None = None) -> None:
        if lock_type != "IMMEDIATE":
            return super().begin(lock_type)
        started = time.monotonic()
        deadline = started + self.busy_seconds
        if not self.writer.acquire(timeout=self.busy_seconds):
            raise peewee.OperationalError("database is locked (by another thread of this process)")
        self._writing.held = True
        cursor = self.cursor()
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    return super().begin(lock_type)
                except peewee.OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() >= deadline:
                        self.end_writing()
                        raise
                pause = self.FAST_POLL if time.monotonic() - started < self.FAST_FOR else self.SLOW_POLL
                time.sleep(pause * (0.5 + random.random()))  # jitter: waiters do not march in step
        except BaseException:
            self.end_writing()
            raise
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(self.busy_seconds * 1000)}")

    def end_writing(self) -> None:
        """Let this process's next writing thread in (once per transaction, on any ending)."""
        if getattr(self._writing, "held", False):
            self._writing.held = False
            self.writer.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_writing()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_writing()


def _forget_after_fork() -> None:
    # A forked child must not share its parent's SQLite connection (gunicorn --preload):
    # drop it unclosed; the child's first query opens its own.
    real = database.obj
    if isinstance(real, peewee.SqliteDatabase):
        real._state.reset()
    if isinstance(real, KeptSqliteDatabase):  # a parent's writing thread does not exist here
        real.writer = threading.Lock()
        real._writing = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)


def release() -> None:
    """End a request's use of the database. PostgreSQL's connection goes back to the pool;
    SQLite's stays open for the thread's next request, unless a transaction is somehow
    still open (then it is rolled back and closed, so nothing uncommitted survives)."""
    if database.is_closed():
        return
    real = database.obj
    if isinstance(real, KeptSqliteDatabase):
        if not real.in_transaction() and not real.connection().in_transaction:
            return
        real.connection().rollback()
        real._state.transactions.clear()
        real.end_writing()
    database.close()


def open_database(url: str, busy_seconds: int = 10) -> peewee.Database:
    """Create (but do not connect) the peewee database a URL names.

    ``busy_seconds`` bounds how long a write waits for SQLite's lock (and a
    PostgreSQL connection for its server) before failing; the web layer
    answers that failure with a 503, so nobody waits without end.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = Path(unquote(url[len("sqlite:///") :]))
        path.parent.mkdir(parents=True, exist_ok=True)
        create_closed_file(path)
        pragmas = [(name, busy_seconds * 1000 if name == "busy_timeout" else value)
                   for name, value in SQLITE_PRAGMAS]
        return KeptSqliteDatabase(str(path), pragmas=pragmas, timeout=busy_seconds,
                                  busy_seconds=busy_seconds)
    if parts.scheme in {"postgres", "postgresql"}:
        options = dict(parse_qsl(parts.query))
        if "options=" in parts.query.split("&"):
            # ``?options=`` sends no startup options (PgBouncer before 1.20 refuses them);
            # parse_qsl drops blank values, which would bring the default back.
            options["options"] = ""
        return TimedPostgresqlDatabase(
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname,
            port=parts.port,
            max_connections=int(options.pop("max_connections", 32)),
            stale_timeout=300,
            timeout=busy_seconds,  # waiting for a free pooled connection
            **{**_pg_network_defaults(busy_seconds), **options},
        )
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r}")


#: What a new SQLite file is opened with; the umask takes off what it takes off (a group shared
#: with the MTA's pipe user needs ``umask 007``, see the README), but never others' bits.
CLOSED_FILE_MODE = 0o660


def create_closed_file(path: Path) -> None:
    """Create ``path`` empty, closed to other users, unless it exists: SQLite would create it
    with 0644 under the usual umask, readable by every local user, and the database holds
    password hashes, stored SMTP secrets and every customer's message. SQLite takes an empty
    file as a new database, and gives the ``-wal`` and ``-shm`` files it makes beside it the
    database file's own mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CLOSED_FILE_MODE))
    except OSError:  # there already, or a folder SQLite will report on itself when it opens it
        pass


def exposed_files(url: str) -> list[tuple[Path, int]]:
    """The SQLite database ``url`` names, and its ``-wal`` and ``-shm`` files, that other users
    may read or write (mode & 0o007), with their modes. Empty for any other database."""
    if not url.startswith("sqlite:///"):
        return []
    path = Path(unquote(url[len("sqlite:///") :]))
    found = []
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = candidate.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o007:
            found.append((candidate, mode))
    return found


def exposure_warning(url: str, what: str = "database",
                     why: str = "it holds password hashes and stored secrets") -> str | None:
    """A warning naming the files of :func:`exposed_files` and the ``chmod`` that closes them."""
    found = exposed_files(url)
    if not found:
        return None
    listed = ", ".join(f"{path} (mode {mode:04o})" for path, mode in found)
    return (f"the SQLite {what} is open to other users of this machine: {listed}. Close it, as "
            f"{why}: chmod o-rwx "
            f"{' '.join(str(path) for path, _mode in found)}")


class TimedPostgresqlDatabase(PooledPostgresqlDatabase):
    """PostgreSQL's pool, whose connection takes this thread's :func:`statement_limit` as it is
    handed out: a web request's statements stop after the limit, while the background work
    sharing the pool (``serve`` runs the worker in-process) keeps the session's own setting.
    A connection is changed (one round trip) only when the thread wants another limit than
    the one it carries, so a web process's connections are set once."""

    def _initialize_connection(self, conn: Any) -> None:
        super()._initialize_connection(conn)
        wanted = getattr(_local, "statement_ms", None)
        carried = _statement_limits.get(conn)
        if wanted == carried:
            return
        with conn.cursor() as cursor:
            if wanted is None:  # back to the session's default (the role's, the URL's options)
                cursor.execute("RESET statement_timeout")
                _statement_limits.pop(conn, None)
            else:
                cursor.execute("SELECT set_config('statement_timeout', %s, false)", (str(wanted),))
                _statement_limits[conn] = wanted


#: The statement_timeout (ms) each pooled connection was given by :class:`TimedPostgresqlDatabase`.
_statement_limits: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


@contextmanager
def statement_limit(seconds: int) -> Iterator[None]:
    """Stop each PostgreSQL statement of this thread that runs longer than ``seconds`` (0: no
    limit): a web request must not hold a server thread without end behind a query gone slow
    (a plan gone wrong, a table scan), which then fails as any database error does, with a
    503 and ``Retry-After``. Applies to the connections opened inside; SQLite is left alone."""
    previous = getattr(_local, "statement_ms", None)
    _local.statement_ms = seconds * 1000 if seconds else None
    try:
        yield
    finally:
        _local.statement_ms = previous


def _pg_network_defaults(busy_seconds: int) -> dict[str, int | str]:
    """libpq's network settings unless the URL sets them: a server that does not answer the
    connection, or a host that vanishes mid-query (sent data never acknowledged), fails the
    request after ``busy_seconds`` (a 503) instead of holding a server thread until the
    kernel gives up, minutes later; keepalives find a pooled connection whose host is gone.
    ``lock_timeout`` does the same for a row or table lock held by someone else (a stuck
    session, a long manual transaction), as SQLite's busy timeout does for its file lock."""
    return {"connect_timeout": busy_seconds, "tcp_user_timeout": busy_seconds * 1000,
            "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
            "options": f"-c lock_timeout={busy_seconds * 1000}"}


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


class QueryTimeout(Exception):
    """A read ran past its :func:`time_limit` and was stopped by the database."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Stop the queries inside after ``seconds`` with :class:`QueryTimeout`: one agent's
    search for a word in every incident must not keep a server process (and PostgreSQL's
    parallel workers) busy for minutes. PostgreSQL: ``statement_timeout`` for a transaction
    (a savepoint inside one); SQLite: a progress handler that interrupts past the deadline."""
    if is_sqlite():
        connection = database.connection()
        deadline = time.monotonic() + seconds
        connection.set_progress_handler(lambda: time.monotonic() > deadline, 20_000)
        try:
            yield
        except peewee.OperationalError as error:
            if "interrupted" in str(error):
                raise QueryTimeout(str(error)) from error
            raise
        finally:
            connection.set_progress_handler(None, 0)
        return
    try:
        with database.atomic():
            cursor = database.execute_sql("SELECT current_setting('statement_timeout')")
            before = cursor.fetchone()[0]
            database.execute_sql("SELECT set_config('statement_timeout', %s, true)",
                                 (str(max(1, int(seconds * 1000))),))
            yield
            database.execute_sql("SELECT set_config('statement_timeout', %s, true)", (before,))
    except peewee.OperationalError as error:
        if sqlstate(error) == "57014":  # query_canceled
            raise QueryTimeout(str(error)) from error
        raise


def sqlstate(error: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE for a database error, or None. peewee wraps the driver's error
    (``orig``); psycopg 3 names the code ``sqlstate``, psycopg2 ``pgcode``."""
    for cause in (error, getattr(error, "orig", None), error.__cause__, error.__context__):
        code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


#: serialization_failure and deadlock_detected: PostgreSQL undid a transaction because another
#: one raced it, and running it again from its start is the documented answer.
WRITE_CONFLICTS = frozenset({"40001", "40P01"})


def is_write_conflict(error: BaseException) -> bool:
    """Whether ``error`` is a race lost to another transaction, which a fresh attempt can win."""
    return sqlstate(error) in WRITE_CONFLICTS


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
    hooks: list[Callable[[], None]] = []
    _local.depth += 1
    try:
        if outermost and is_sqlite():
            context = database.atomic("IMMEDIATE")
        else:
            context = database.atomic()
        with context:
            yield
            if outermost:
                hooks = _take_before_commit()
                for hook in hooks:
                    hook()
    except BaseException:
        del pending[mark:]  # this (sub)transaction rolled back: so do its callbacks
        if hooks and not getattr(_local, "before_commit", None):
            _local.before_commit = hooks  # what they wrote rolled back too: the next attempt runs them
        raise
    finally:
        _local.depth -= 1
    if outermost:
        _local.commits = commit_count() + 1
        callbacks = list(pending)
        pending.clear()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the change is committed: a failing follow-up must not undo the answer
                logger.exception("after-commit callback failed")


def _take_before_commit() -> list[Callable[[], None]]:
    hooks = getattr(_local, "before_commit", [])
    _local.before_commit = []
    return hooks


def with_next_commit(callback: Callable[[], None] | None) -> None:
    """Run ``callback`` inside this thread's next outermost write transaction, just before it
    commits (once; ``None`` cancels). The web layer records a request's idempotency key this
    way, atomically with the first change the request makes."""
    _local.before_commit = [callback] if callback else []


def commit_count() -> int:
    """How many outermost write transactions this thread has committed (the web layer tells
    by it whether a request that failed had already changed something)."""
    return getattr(_local, "commits", 0)


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


# -- statements compiled once -----------------------------------------------------------------


_PLAIN_TEXT = re.compile(r"[A-Za-z0-9_ -]{0,64}")


def planned_once(sql: str, params: list[Any]) -> tuple[str, list[Any]]:
    """A statement kept and run many times, made cheap for PostgreSQL to plan.

    PostgreSQL plans a statement with parameters again on every run while each plan for the
    given values looks cheaper than a generic one, and planning the queue statements (UNIONs
    over an incident table with ~60 partial indexes) took 6-30 ms against well under 1 ms
    to run them. A statement without parameters that psycopg has prepared (after its fifth
    run on a connection) keeps one plan. So on PostgreSQL the values are written into the
    text as literals, but only integers and plain words (ids, sizes, statuses), which need
    no quoting beyond the quotes themselves; anything else leaves the statement as it was.
    SQLite keeps its own prepared statements and is given the statement unchanged.
    """
    if is_sqlite() or "%" in sql.replace("%s", ""):
        return sql, params
    pieces = sql.split("%s")
    if len(pieces) != len(params) + 1:
        return sql, params
    literals = []
    for value in params:  # exact types: a bool, an enum or a str subclass is written otherwise
        if type(value) is int:
            literals.append(f"({value})" if value < 0 else str(value))  # "- -5" is no comment
        elif type(value) is str and _PLAIN_TEXT.fullmatch(value):
            literals.append(f"'{value}'")
        else:
            return sql, params
    return "".join(piece + literal for piece, literal in zip(pieces, [*literals, ""], strict=True)), []


class _Slot:
    """Where a :class:`Statement`'s n-th argument goes among a compiled query's parameters."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class Statement:
    """A query peewee builds into SQL once per kind of database, then run with new values.

    Building and compiling a small peewee query costs ~150 µs, more than SQLite takes to run
    it; a page's fixed queries (the session, the agent's teams, unread notices) are the same
    statement every time. ``build`` takes one placeholder per argument and returns the query;
    an argument must be a plain value as the database stores it (an id, not a model), since
    no field converter sees it. The SQL must not depend on the values (no ``IN`` lists).
    """

    def __init__(self, build: Callable[..., peewee.Query],
                 models: tuple[type[peewee.Model], ...] = ()) -> None:
        self._build = build
        self._models = models
        self._compiled: dict[type, tuple[str, list[object]]] = {}

    def bind(self, *args: object) -> tuple[str, list[object]]:
        """The SQL for this database and the parameters with ``args`` in their places."""
        kind = type(database.obj)
        compiled = self._compiled.get(kind)
        if compiled is None:
            slots = [peewee.Value(_Slot(i), converter=False, unpack=False) for i in range(len(args))]
            compiled = database.obj.get_sql_context().sql(self._build(*slots)).query()
            self._compiled[kind] = compiled
        sql, params = compiled
        return sql, [args[p.index] if isinstance(p, _Slot) else p for p in params]

    def execute(self, *args: object) -> Any:
        """Run it; the cursor."""
        return database.execute_sql(*self.bind(*args))

    def rows(self, *args: object) -> list[list[Any]]:
        """Run it; per row, an instance of each of the ``models`` it was made with (which
        it must select whole, in that order: ``A.select(A, B)``), None for an outer join
        that found nothing (see :func:`hydrate`)."""
        return [hydrate(row, *self._models) for row in self.execute(*args)]


def instance(model: type[peewee.Model], data: dict[str, Any]) -> Any:
    """A model instance as peewee builds one from a row: clean, nothing dirty, ``data``
    holding each field's Python value by name."""
    made = model.__new__(model)
    made.__data__ = data
    made._dirty = set()
    made.__rel__ = {}
    return made


def _datetime_value(field: peewee.Field) -> Callable[[Any], Any]:
    slow = field.python_value

    def convert(value: Any) -> Any:
        if value.__class__ is dt.datetime:  # PostgreSQL's driver gives date-times as they are
            return value
        if isinstance(value, str):
            try:  # what peewee stores in SQLite, parsed in C (peewee tries strptime formats)
                return dt.datetime.fromisoformat(value)
            except ValueError:
                pass
        return slow(value)
    return convert


def converters(model: type[peewee.Model]) -> list[tuple[str, Callable[[Any], Any] | None]]:
    """(field name, database-to-Python converter) for each field of ``model`` in declared
    order; date-times parse faster than peewee's own converter, to the same values. None
    where the driver already gives the Python value (ids, integers and text: peewee's own
    converter would only call ``int`` or ``str`` on it again)."""
    found = _converters.get(model)
    if found is None:
        found = _converters[model] = [(field.name, _converter(field)) for field in model._meta.sorted_fields]
    return found


def _converter(field: peewee.Field) -> Callable[[Any], Any] | None:
    if isinstance(field, peewee.DateTimeField):
        return _datetime_value(field)
    plain = (peewee.AutoField, peewee.IntegerField, peewee.CharField, peewee.TextField)
    if isinstance(field, peewee.ForeignKeyField):
        return None if type(field.rel_field) in plain else field.python_value
    return None if type(field) in plain else field.python_value


_converters: dict[type, list[tuple[str, Callable[[Any], Any] | None]]] = {}


def hydrate(row: tuple | list, *models: type[peewee.Model]) -> list[Any]:
    """Instances of ``models`` from one row that selected each model's fields in their
    declared order (``Model.select(A, B)``); a model whose id is NULL (an outer join that
    found nothing) is ``None``."""
    found, values = [], iter(row)
    for model in models:
        # A NULL stays None without its field's converter (each returns None for None).
        data = {name: value if (value := next(values)) is None or convert is None else convert(value)
                for name, convert in converters(model)}
        key = getattr(model._meta.primary_key, "name", "id")
        found.append(instance(model, data) if data.get(key) is not None else None)
    return found
