"""The contract between the senders of tasks and the worker: every name anyone can send is registered,
and every queue a task routes to is consumed by a worker command of each deployment.

Senders: the outboxes (the web side after a commit, every sweep, the admin replays and the
CLI's replay all hand over through them) and beat, checked by what they send; and every name
written where the code sends a task (a direct `send_task` in the CLI or a blueprint, say), checked
by reading the source. A name the worker does not know would be re-sent by the sweep forever; a
queue nobody consumes would hold its jobs forever.
"""
from __future__ import annotations

import ast
import functools
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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


# --- the names written in the sending code ---------------------------------------------------

SENDING_CODE = ("web", "shared", "worker", "cli.py", "beat_schedule.py")
TASK_NAME = "shared.jobs.kinds.TaskName"
# Calls that take a task name: the position of the name among the arguments (after `self` for a
# method) and the keywords it may be passed by. Methods are matched by their name on any receiver.
NAMING_METHODS = {"send_task": (0, ("name",)), "signature": (0, ("name", "varies"))}
# Functions and classes are matched by what their name resolves to through the file's imports.
# A function that passes one of its parameters on as a task name (`shared.taskqueue.send`,
# beat's `_every`) is found by the scan and joins these, so its callers are checked in turn.
NAMING_FUNCTIONS = {
    "celery.signature": (0, ("varies",)),
    "celery.Signature": (0, ("task",)),
    "shared.jobs.outbox.Dispatch": (0, ("task",)),  # (task, row id): what the outboxes hand over
    "shared.jobs.outbox.Outbox": (3, ("task_of",)),  # the task a row needs, as a function of the row
}
# The outbox's hand-overs (hand_over, hand_over_all, ...) take dispatches after the producer and the
# database, and a dispatch may be written as a plain (task, row id) tuple.
HAND_OVER = "hand_over"
# A task looked up by name, `app.tasks[name]`, and run by one of these.
RUN_METHODS = frozenset({"apply_async", "apply", "delay", "s", "si", "signature"})
# A name taken from a Dispatch or an Outbox was checked where that was made.
CARRIERS = frozenset({"task", "task_of"})
# Calls that give a TaskName (the task of a job kind, from KINDS).
GIVES_TASK_NAME = frozenset({"shared.jobs.kinds.task_for"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sending_sources() -> Iterator[Path]:
    for entry in SENDING_CODE:
        path = PROJECT_ROOT / entry
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _is_project_module(dotted: str) -> bool:
    path = PROJECT_ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@dataclass(frozen=True)
class _Scope:
    """The function a call is in: its parameters, and how a caller would name it."""

    params: tuple[str, ...] = ()
    positional: int = 0  # how many of the parameters can be passed by position
    key: str | None = None  # dotted for a module's function, "module:name" for a nested one, ".name" for a method
    skip: int = 0  # 1 for a method's self or cls


class _Sites(ast.NodeVisitor):
    """Every call and dict literal of a module, with the function it is in."""

    def __init__(self, module_name: str) -> None:
        self.module_name = module_name
        self.scopes: list[_Scope] = [_Scope()]
        self.in_class: list[bool] = [False]
        self.found: list[tuple[ast.Call | ast.Dict, _Scope]] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.in_class.append(True)
        self.generic_visit(node)
        self.in_class.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        positional = node.args.posonlyargs + node.args.args
        params = tuple(a.arg for a in positional + node.args.kwonlyargs)
        method = self.in_class[-1] and not any(isinstance(d, ast.Name) and d.id == "staticmethod"
                                               for d in node.decorator_list)
        if method:
            key = f".{node.name}"
        elif len(self.scopes) > 1 or len(self.in_class) > 1:
            key = f"{self.module_name}:{node.name}"  # called by its bare name within the module
        else:
            key = f"{self.module_name}.{node.name}"
        self.scopes.append(_Scope(params, len(positional), key, 1 if method else 0))
        self.in_class.append(False)
        self.generic_visit(node)
        self.in_class.pop()
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        self.found.append((node, self.scopes[-1]))
        self.generic_visit(node)

    visit_Dict = visit_Call


@dataclass
class _Module:
    """One source file: what its names resolve to, and its module-level constants."""

    name: str
    path: str
    tree: ast.Module
    is_package: bool = False
    aliases: dict[str, str] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)  # local names bound to a module
    constants: dict[str, ast.expr] = field(default_factory=dict)
    sites: list[tuple[ast.Call | ast.Dict, _Scope]] = field(default_factory=list)

    def __post_init__(self) -> None:
        collector = _Sites(self.name)
        collector.visit(self.tree)
        self.sites = collector.found
        package = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.aliases[node.name] = f"{self.name}.{node.name}"
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.aliases[node.targets[0].id] = f"{self.name}.{node.targets[0].id}"
                self.constants[node.targets[0].id] = node.value
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    self.aliases[local] = alias.name if alias.asname else local
                    self.modules.add(local)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    local = alias.asname or alias.name
                    self.aliases[local] = f"{base}.{alias.name}"
                    if _is_project_module(f"{base}.{alias.name}"):
                        self.modules.add(local)

    def resolve(self, node: ast.expr) -> str | None:
        """The dotted name `node` stands for, when it is a name or an attribute of an imported module."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in self.modules:
            return f"{self.aliases[node.value.id]}.{node.attr}"
        return None


class _NameScan:
    """Every task name argument in one module, judged; parameters passed on as names become senders."""

    def __init__(self, module: _Module, registered: set[str], senders: dict[str, tuple[int, tuple[str, ...]]]) -> None:
        self.module, self.registered, self.senders = module, registered, senders
        self.problems: list[str] = []
        self.sites: list[str] = []

    def run(self) -> None:
        for node, scope in self.module.sites:
            if isinstance(node, ast.Call):
                self._call(node, scope)
            else:
                entries = {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
                if "task" in entries and "schedule" in entries:  # a beat entry
                    self._check(entries["task"], scope)

    def _call(self, node: ast.Call, scope: _Scope) -> None:
        func, target = node.func, self.module.resolve(node.func)
        if target is None and isinstance(func, ast.Name):
            target = f"{self.module.name}:{func.id}"
        method = func.attr if isinstance(func, ast.Attribute) and not (
            isinstance(func.value, ast.Name) and func.value.id in self.module.modules) else None
        if method in RUN_METHODS and (key := _task_lookup(func.value)) is not None:
            self._check(key, scope)
        elif method == "signature" and node.args and isinstance(node.args[0], (ast.Tuple, ast.List, ast.Dict)):
            pass  # a task's signature(args, ...), not a name
        elif method in NAMING_METHODS or (method and f".{method}" in self.senders):
            self._check_argument(node, NAMING_METHODS.get(method) or self.senders[f".{method}"], scope)
        elif method and method.startswith(HAND_OVER):
            handed = _argument(node, 2, ("dispatch", "dispatches"))
            for dispatch in _dispatches(handed, many=method.endswith("_all")):
                self._check(dispatch, scope)
        elif target in NAMING_FUNCTIONS or target in self.senders:
            self._check_argument(node, NAMING_FUNCTIONS.get(target) or self.senders[target], scope)
        elif isinstance(func, ast.Name) and func.id == "dict":
            words = {k.arg: k.value for k in node.keywords}
            if "task" in words and "schedule" in words:
                self._check(words["task"], scope)

    def _check_argument(self, node: ast.Call, slot: tuple[int, tuple[str, ...]], scope: _Scope) -> None:
        expr = _argument(node, *slot)
        if expr is not None:
            self._check(expr, scope)

    def _check(self, expr: ast.expr, scope: _Scope) -> None:
        self.sites.append(f"{self.module.path}:{expr.lineno}")
        problem = self._judge(expr, scope)
        if problem:
            self.problems.append(f"{self.sites[-1]}: {problem}")

    def _judge(self, expr: ast.expr, scope: _Scope, depth: int = 0) -> str | None:
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "str" and expr.args:
            expr = expr.args[0]
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return None if expr.value in self.registered else f"{expr.value!r} is not a registered task name"
        if isinstance(expr, ast.Attribute) and self.module.resolve(expr.value) == TASK_NAME:
            return None if expr.attr in TaskName.__members__ else f"TaskName has no member {expr.attr}"
        if isinstance(expr, ast.Call) and self.module.resolve(expr.func) == TASK_NAME:
            # TaskName(value) raises for a value that is no member; a written one is checked here.
            literal = expr.args and isinstance(expr.args[0], ast.Constant)
            return self._judge(expr.args[0], scope, depth + 1) if literal else None
        if isinstance(expr, ast.Call) and self.module.resolve(expr.func) in GIVES_TASK_NAME:
            return None
        if isinstance(expr, ast.Lambda):
            return self._judge(expr.body, scope, depth + 1)
        if isinstance(expr, ast.Name) and expr.id in scope.params and scope.key is not None:
            # Passed on: this function is a sender, and its callers' names are checked.
            index = scope.params.index(expr.id)
            self.senders.setdefault(scope.key, (index - scope.skip if index < scope.positional else -1, (expr.id,)))
            return None
        if isinstance(expr, ast.Name) and expr.id in self.module.constants and depth < 5:
            return self._judge(self.module.constants[expr.id], _Scope(), depth + 1)
        root, attributes = _chain(expr)
        if root in scope.params and attributes & CARRIERS:
            return None
        return f"the task name {ast.unparse(expr)!r} cannot be checked; write a TaskName member"


def _argument(node: ast.Call, position: int, keywords: tuple[str, ...]) -> ast.expr | None:
    for keyword in node.keywords:
        if keyword.arg in keywords:
            return keyword.value
    if 0 <= position < len(node.args) and not any(isinstance(a, ast.Starred) for a in node.args[:position + 1]):
        return node.args[position]
    return None


def _task_lookup(node: ast.expr) -> ast.expr | None:
    """The key of `<app>.tasks[key]` or `<app>.tasks.get(key)`."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "tasks":
        return node.slice
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "tasks" and node.args:
        return node.args[0]
    return None


def _dispatches(node: ast.expr | None, *, many: bool) -> Iterator[ast.expr]:
    """The task of each dispatch written as a plain (task, row id) tuple."""
    if many and isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = node.elts
    elif many and isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
        items = [node.elt]
    else:
        items = [node] if node is not None else []
    for item in items:
        if isinstance(item, ast.Tuple) and item.elts:
            yield item.elts[0]


def _chain(node: ast.expr) -> tuple[str | None, set[str]]:
    """`dispatch.task` -> ("dispatch", {"task"}); `self.task_of(row)` -> ("self", {"task_of"})."""
    attributes = set()
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            if isinstance(node, ast.Attribute):
                attributes.add(node.attr)
            node = node.value
        else:
            return (node.id if isinstance(node, ast.Name) else None), attributes


@functools.lru_cache(maxsize=None)
def _parse(path: str, text: str) -> _Module:
    return _Module(_module_name(PROJECT_ROOT / path), path, ast.parse(text, path),
                   is_package=path.endswith("__init__.py"))


def scan_task_names(sources: dict[str, str], registered: set[str]) -> tuple[list[str], list[str], set[str]]:
    """Every task name argument in `sources` (path -> text): the problems ("path:line: why"), the sites read
    ("path:line") and the functions found to pass a name on."""
    modules = [_parse(path, text) for path, text in sources.items()]
    senders: dict[str, tuple[int, tuple[str, ...]]] = {}
    while True:  # until no new sender turns up, since a sender's callers may be anywhere
        known = len(senders)
        scans = [_NameScan(module, registered, senders) for module in modules]
        for scan in scans:
            scan.run()
        if len(senders) == known:
            problems = [problem for scan in scans for problem in scan.problems]
            return problems, [site for scan in scans for site in scan.sites], set(senders)


def _sending_code() -> dict[str, str]:
    return {str(path.relative_to(PROJECT_ROOT)): path.read_text() for path in _sending_sources()}


def test_every_task_name_written_in_the_sending_code_is_registered(worker_app):
    problems, sites, senders = scan_task_names(_sending_code(), registered(worker_app))
    assert not problems, "task names the worker does not register:\n" + "\n".join(problems)
    # The scan reads what it should: the helpers that pass a name on, and beat's entries.
    assert {"shared.taskqueue.send", "beat_schedule._every"} <= senders, senders
    assert {site.split(":")[0] for site in sites} >= {"beat_schedule.py", "shared/taskqueue.py",
                                                      "shared/jobs/outbox.py"}, sites


_SEND_IMPORTS = ("from celery import signature\nfrom shared.jobs.kinds import TaskName\n"
                 "from shared.jobs.outbox import JOBS, Dispatch\nfrom shared.taskqueue import send\n")


@pytest.mark.parametrize("line", [
    'producer.send_task("webhooks.process_stripe_evnt", args=(1,))',
    'producer.send_task(name="webhooks.process_stripe_evnt")',
    'send(producer, "webhooks.process_stripe_evnt", "1")',
    'JOBS.hand_over(producer, db, Dispatch("generation.runn", row.id))',
    'JOBS.hand_over_all(producer, db, [("generation.runn", row.id)])',
    'signature("billing.reconcil").delay()',
    'app.tasks["billing.reconcil"].delay()',
    'producer.send_task(TaskName.GENERATION_RUNN)',
    'producer.send_task(f"webhooks.{kind}")',
    'entries = {"reap": {"task": "maintenance.reap_stuck", "schedule": 60.0}}',
    # a helper that passes its parameter on: its callers are checked
    'def go(name):\n        producer.send_task(str(name))\n    go("billing.reconcil")',
    'def go(*, task):\n        send(producer, task)\n    go(task="billing.reconcil")',
])
def test_the_scan_refuses_a_name_the_worker_does_not_register(worker_app, line):
    source = f"{_SEND_IMPORTS}\n\ndef replay(producer, db, row, app, kind):\n    {line}\n"
    problems, _, _ = scan_task_names({**_sending_code(), "web/blueprints/example.py": source},
                                     registered(worker_app))
    last_line = source.count("\n")
    assert [problem.split(": ")[0] for problem in problems] == [f"web/blueprints/example.py:{last_line}"], problems


def test_the_scan_accepts_registered_names_and_task_name_members(worker_app):
    source = (f"{_SEND_IMPORTS}\nNAME = TaskName.BILLING_RECONCILE\n\n"
              "def replay(producer, db, row, app, task):\n"
              '    producer.send_task("webhooks.process_stripe_event")\n'
              "    producer.send_task(str(TaskName.GENERATION_RUN))\n"
              "    send(producer, NAME)\n"
              "    JOBS.hand_over(producer, db, Dispatch(TaskName.GENERATION_RUN, row.id))\n"
              "    app.tasks[TaskName.BILLING_RECONCILE].delay()\n"
              "    inspect.signature(replay)\n"
              "    producer.send_task(task)\n"  # passed on: replay's callers are checked
              "\n\nreplay(None, None, None, None, TaskName.WEBHOOKS_SWEEP_MISSED)\n")
    problems, sites, senders = scan_task_names({**_sending_code(), "cli_example.py": "import inspect\n" + source},
                                               registered(worker_app))
    mine = [site for site in sites if site.startswith("cli_example.py:")]
    assert not problems and len(mine) == 7 and "cli_example.replay" in senders, (problems, mine, senders)


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
