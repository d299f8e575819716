"""Engine and session handling: one engine per process, one session per unit of work."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import Settings


def make_engine(settings: Settings) -> Engine:
    """Create the engine for `settings.database_url` (SQLite or PostgreSQL via psycopg 3)."""
    url = settings.database_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if settings.is_sqlite:
        _ensure_sqlite_dir(url)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", _sqlite_lock_for_update)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the web and worker processes read while one writes; foreign keys are
    # off by default in SQLite and our cascades rely on them.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs the log at checkpoints, not at every commit: a commit survives
    # any crash of our processes (the drills SIGKILL them), and only an operating-system crash
    # or power loss can take back the last ones. SQLite is the development database (production
    # refuses it), and a synced commit costs ~3 ms here against ~0.2 ms (docs/PERFORMANCE.md).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_lock_for_update(_conn, cursor, _statement, _parameters, context, _executemany) -> None:
    # SQLite has no SELECT ... FOR UPDATE, and pysqlite begins a transaction only at the first
    # write, so a read-check-write (a quota, a project's files) could act on what another
    # writer has since changed. A locking read takes the database's write lock instead, as
    # its first statement; later reads then see every committed write and none can follow.
    compiled = context.compiled
    if compiled is not None and getattr(compiled.statement, "_for_update_arg", None) is not None \
            and not cursor.connection.in_transaction:
        cursor.execute("BEGIN IMMEDIATE")


class Database:
    """The engine and session factory built from settings; nothing connects until used."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose_after_fork(self) -> None:
        """Drop connections inherited from a parent process without closing them."""
        self.engine.dispose(close=False)
