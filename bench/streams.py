"""Event stream benchmark: API throughput with 500 open streams against none, and event latency.

    python bench/streams.py [--streams 500] [--seconds 10] [--rounds 2] [--rate 50] [--latency-seconds 20]

Runs the service as deployed: gunicorn (2 sync workers) for the API and the stream process
(`python -m eventstream`) beside it, on one embedded Redis and one database. In the same
run it measures, with wrk, the job poll (`GET /api/v2/jobs/{id}`) and `GET /api/v2/auth/me`
without streams and then while --streams clients (one user each, as browsers do) hold a
stream open; --rate events per second are committed and published in both arms (the
workers' share), and reach the clients when they are there. It prints each figure and the
ratio with/without. Each event's payload carries the time its job row change committed; the
clients (a separate process) report commit-to-arrival latency, quiet and under the wrk load.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, embedded_redis, fresh_database, gunicorn, wrk  # noqa: E402
from tests.peers.processes import free_port, serve  # noqa: E402

# Recording modes the parent sets for the clients' process.
OFF, LOADED, QUIET = 0, 1, 2


def raise_descriptor_limit(needed: int) -> int:
    """Lift the soft open-files limit (inherited by every process started here) for the sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = hard if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"ulimit -n is {soft}; {needed} descriptors are needed (raise the hard limit)")
    return soft


def seed(database_url: str, redis_url: str, streams: int):
    """Migrate; a polling user with a job, and one user with a job per stream. Tokens for each."""
    from cli import upgrade_database
    from shared.db import Database
    from shared.jobs.states import JobStatus
    from shared.models import Job, User
    from shared.security import TokenService, hash_password
    from shared.settings import Settings
    from shared.stream_tokens import StreamTokens

    os.environ["DATABASE_URL"] = database_url
    upgrade_database()
    settings = Settings(database_url=database_url, redis_url=redis_url, _env_file=None)
    db = Database(settings)
    password = hash_password("Bench-pass-1")  # one hash for all: argon2 is slow on purpose
    with db.transaction() as session:
        users = [User(email=f"bench-{n}@example.com", password_hash=password) for n in range(streams + 1)]
        session.add_all(users)
        session.flush()
        jobs = [Job(owner_id=user.id, kind="fullstack", payload={}, max_attempts=3,
                    status=JobStatus.RUNNING, progress_stage=JobStatus.RUNNING) for user in users]
        session.add_all(jobs)
        session.flush()
        poll_user, poll_job = users[0], jobs[0]
        access = TokenService(settings).issue(poll_user.id, poll_user.role, uuid.uuid4())  # a login never logged out
        stream_tokens = StreamTokens(settings)
        watchers = [(user.id, job.id, stream_tokens.issue(user.id)[0]) for user, job in zip(users[1:], jobs[1:])]
        poll_job_id = poll_job.id
    db.engine.dispose()
    return settings, access, poll_job_id, watchers


def hold_streams(url: str, tokens: list[str], mode, ready, stop, results) -> None:
    """The clients' process: open every stream, keep reading, record latencies while asked to."""
    from shared.events import JobEvent
    from shared.sse import EventStreamParser

    import aiohttp

    latencies: dict[int, list[float]] = {LOADED: [], QUIET: []}
    problems = {"failed": 0, "ended": 0}

    async def one(session, token: str, opened: asyncio.Event, counter: list[int]) -> None:
        parser, counted = EventStreamParser(), False
        async with session.get(url, params={"token": token}, headers={"Accept": "text/event-stream"}) as response:
            if response.status != 200:
                problems["failed"] += 1
                counter[0] += 1
                if counter[0] == len(tokens):
                    opened.set()
                return
            async for raw in response.content:
                message = parser.feed(raw.decode().rstrip("\n"))
                if message is None:
                    if parser.retry_ms is not None and not counted:
                        counted = True  # its first line (the retry hint) arrived: this stream is open
                        counter[0] += 1
                        if counter[0] == len(tokens):
                            opened.set()
                    continue
                event = JobEvent.from_json(message.data, message.id)
                sent = event.payload.get("sent")
                if sent is not None and mode.value != OFF:
                    latencies[mode.value].append(time.time() - sent)
        problems["ended"] += 1

    async def main() -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
            opened, counter = asyncio.Event(), [0]
            tasks = [asyncio.create_task(one(session, token, opened, counter)) for token in tokens]
            await opened.wait()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    results.put({"latencies": latencies, **problems})


class Publisher(threading.Thread):
    """`rate` events per second, as a worker publishes them: commit the row change, then publish."""

    def __init__(self, settings, watchers, rate: float) -> None:
        super().__init__(daemon=True)
        from shared.db import Database
        from shared.events import EventStore

        self.db, self.store = Database(settings), EventStore.from_settings(settings)
        self.watchers, self.interval = watchers, 1 / rate
        self.stopped = threading.Event()
        self.published = 0

    def run(self) -> None:
        from sqlalchemy import update

        from shared.events import JOB_PROGRESS
        from shared.models import Job

        rng = random.Random(7)
        next_at = time.monotonic()
        while not self.stopped.is_set():
            owner_id, job_id, _token = rng.choice(self.watchers)
            percent = self.published % 100
            with self.db.transaction() as session:
                session.execute(update(Job).where(Job.id == job_id).values(progress_percent=percent,
                                                                           progress_stage="bench"))
            sent = time.time()
            self.store.publish(owner_id, job_id, JOB_PROGRESS, {"percent": percent, "stage": "bench", "sent": sent})
            self.published += 1
            next_at += self.interval
            self.stopped.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        self.db.engine.dispose()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second while streams are open")
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    limit = raise_descriptor_limit(2 * args.streams + 256)

    with tempfile.TemporaryDirectory() as tmp, embedded_redis() as redis_url, \
            fresh_database(args.database_url, tmp) as database_url:
        settings, access, poll_job, watchers = seed(database_url, f"{redis_url}/0", args.streams)
        app_port, stream_port = free_port(), free_port()
        env = {"REDIS_URL": f"{redis_url}/0", "DATABASE_URL": database_url, "DEVORA_ENV": "development",
               "RATELIMIT_DEFAULT": "10000000 per minute", "LOG_LEVEL": "WARNING",
               "EVENTS_MAX_STREAMS_PER_PROCESS": str(args.streams + 100)}
        app_url, stream_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{stream_port}"
        auth = {"Authorization": f"Bearer {access}"}
        measures = [("job poll, GET /jobs/{id}", f"{app_url}/api/v2/jobs/{poll_job}"),
                    ("GET /auth/me", f"{app_url}/api/v2/auth/me")]
        figures: dict[str, dict[str, list[float]]] = {name: {"without": [], "with": []} for name, _ in measures}
        spawn = multiprocessing.get_context("spawn")
        with serve(gunicorn("web:create_app()", app_port), env, ROOT, f"{app_url}/healthz"), \
                serve([sys.executable, "-m", "eventstream", "--port", str(stream_port)], env, ROOT,
                      f"{stream_url}/readyz") as stream_process:
            for _name, url in measures:  # warm connections and caches
                wrk(url, seconds=1, headers=auth)
            loaded: list[float] = []
            quiet: list[float] = []
            outcome: dict = {}
            stream_cpu, client_cpu, held_seconds = 0.0, 0.0, 0.0
            for round_number in range(args.rounds):
                # The workers' side (row commits and publishes at --rate) runs in both arms, so
                # the ratio isolates what the open streams and their deliveries cost.
                publisher = Publisher(settings, watchers, args.rate)
                publisher.start()
                for name, url in measures:
                    figures[name]["without"].append(wrk(url, seconds=args.seconds, headers=auth))
                mode, ready, stop, results = spawn.Value("i", OFF), spawn.Event(), spawn.Event(), spawn.Queue()
                clients = spawn.Process(target=hold_streams, args=(f"{stream_url}/api/v2/events",
                                                                   [t for _o, _j, t in watchers], mode, ready, stop,
                                                                   results))
                clients.start()
                if not ready.wait(120):
                    raise RuntimeError("the streams did not all open")
                mode.value = LOADED
                cpu_before, started = cpu_seconds(stream_process.pid), time.monotonic()
                clients_before = cpu_seconds(clients.pid)
                for name, url in measures:
                    figures[name]["with"].append(wrk(url, seconds=args.seconds, headers=auth))
                if round_number == args.rounds - 1:
                    mode.value = QUIET
                    time.sleep(args.latency_seconds)
                mode.value = OFF
                stream_cpu += cpu_seconds(stream_process.pid) - cpu_before
                client_cpu += cpu_seconds(clients.pid) - clients_before
                held_seconds += time.monotonic() - started
                publisher.stop()
                time.sleep(1)
                stop.set()
                outcome = results.get(timeout=60)
                clients.join(timeout=30)
                loaded += outcome["latencies"][LOADED]
                quiet += outcome["latencies"][QUIET]
                if outcome["failed"] or outcome["ended"]:
                    print(f"round {round_number + 1}: {outcome['failed']} streams refused, "
                          f"{outcome['ended']} ended early", file=sys.stderr)

    print(f"{args.streams} open streams (one user each) against none, {args.rate:g} events/s published in both; "
          f"wrk -t2 -c16 -d{args.seconds}s, {args.rounds} rounds (medians); ulimit -n {limit}")
    print(f"{'measure':32} {'no streams req/s':>17} {'with streams req/s':>19} {'ratio':>6}")
    for name, runs in figures.items():
        without, with_streams = statistics.median(runs["without"]), statistics.median(runs["with"])
        print(f"{name:32} {without:17.0f} {with_streams:19.0f} {with_streams / without:6.2f}")
    for name, runs in figures.items():
        print(f"{name} by round, without/with: " + ", ".join(
            f"{a:.0f}/{b:.0f}" for a, b in zip(runs["without"], runs["with"])))
    print(f"CPU while the streams were held: stream process {100 * stream_cpu / held_seconds:.1f} % of one core, "
          f"the benchmark's {args.streams} clients {100 * client_cpu / held_seconds:.1f} % "
          f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'commit-to-arrival latency':32} {'events':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, values in (("quiet (streams only)", quiet), ("under the wrk load", loaded)):
        if values:
            print(f"{label:32} {len(values):8d} {percentile(values, 0.5) * 1000:8.1f} "
                  f"{percentile(values, 0.99) * 1000:8.1f} {max(values) * 1000:8.1f}")


if __name__ == "__main__":
    main()
