"""The contract between the senders of tasks and the worker: every name anyone can send is registered,
and every queue a task routes to is consumed by a worker command of each deployment.

Senders: the outboxes (the web side after a commit, every sweep, the admin replays and the
CLI's replay all hand over through them) and beat. A name the worker does not know would be
re-sent by the sweep forever; a queue nobody consumes would hold its jobs forever.
"""
from __future__ import annotations

import shlex

import pytest
import yaml

from beat_schedule import BEAT_SCHEDULE
from shared.jobs.kinds import KINDS, TASK_QUEUES, TaskName
from shared.jobs.outbox import JOBS, WEBHOOK_EVENTS
from shared.settings import PROJECT_ROOT
from shared.taskqueue import QUEUES, celery_config
from tests.conftest import make_settings
from worker.app import create_celery


@pytest.fixture(scope="module")
def worker_app():
    app = create_celery(make_settings("sqlite://", "redis://127.0.0.1:1/0"))
    app.loader.import_default_modules()
    return app


def registered(app) -> set[str]:
    return {name for name in app.tasks if not name.startswith("celery.")}


class _Row:
    """A stand-in for a row, carrying what an outbox reads to choose the task."""

    def __init__(self, **columns) -> None:
        self.id = None
        self.__dict__.update(columns)


def sendable() -> dict[str, str]:
    """Every task name something can send, with who sends it."""
    names = {str(JOBS.dispatch(_Row(kind=kind)).task): f"the jobs outbox, for {kind}" for kind in KINDS}
    names[str(WEBHOOK_EVENTS.dispatch(_Row()).task)] = "the webhook events outbox"
    names.update({entry["task"]: f"beat ({key})" for key, entry in BEAT_SCHEDULE.items()})
    return names


def test_every_name_a_sender_can_send_is_registered_on_the_worker(worker_app):
    missing = {name: who for name, who in sendable().items() if name not in registered(worker_app)}
    assert not missing, f"sent but not registered: {missing}"


def test_the_worker_registers_exactly_the_named_tasks(worker_app):
    assert registered(worker_app) == {str(name) for name in TaskName}
    assert set(TASK_QUEUES) == set(TaskName), "every task has a queue"


def test_every_task_routes_to_a_declared_queue(worker_app):
    declared = {queue.name for queue in celery_config(worker_app.conf.devora_settings)["task_queues"]}
    router = worker_app.amqp.router
    for name in registered(worker_app):
        assert router.route({}, name)["queue"].name in declared, name


def _worker_commands() -> dict[str, list[str]]:
    commands = {}
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        commands[f"Procfile {name}"] = shlex.split(command)
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        commands[f"compose {name}"] = command or []
    return {where: argv for where, argv in commands.items() if argv[:4] == ["celery", "-A", "worker", "worker"]}


def _consumed(argv: list[str]) -> set[str]:
    for index, arg in enumerate(argv):
        if arg in ("-Q", "--queues"):
            return set(argv[index + 1].split(","))
        if arg.startswith("--queues="):
            return set(arg.removeprefix("--queues=").split(","))
    return set(QUEUES)  # without -Q a worker consumes every declared queue


@pytest.mark.parametrize("deployment", ["Procfile", "compose"])
def test_every_queue_a_task_routes_to_is_consumed_by_a_worker_command(worker_app, deployment):
    commands = {where: argv for where, argv in _worker_commands().items() if where.startswith(deployment)}
    assert commands, f"no worker command in the {deployment}"
    consumed = set().union(*(_consumed(argv) for argv in commands.values()))
    routed = {worker_app.amqp.router.route({}, name)["queue"].name for name in registered(worker_app)}
    assert routed <= consumed, f"{deployment}: nobody consumes {sorted(routed - consumed)}"
