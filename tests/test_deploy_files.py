"""docker-compose.yml, the Dockerfile and the Procfile name real modules and documented variables.

No container engine runs here, so the files are checked by reading them.
"""
from __future__ import annotations

import importlib
import json
import re
import shlex

import pytest
import yaml
from click.testing import CliRunner

from cli import main as devora
from shared.settings import PROJECT_ROOT, Settings
from shared.taskqueue import QUEUES

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
DOCUMENTED = (PROJECT_ROOT / ".env.example").read_text()
THIRD_PARTY_IMAGES = ("redis:", "postgres:")


def check_command(argv: list[str]) -> None:
    """Fail unless the command starts something that exists in this project."""
    program = argv[0]
    if program == "gunicorn":
        module, _, factory = argv[-1].partition(":")
        assert callable(getattr(importlib.import_module(module), factory.removesuffix("()")))
    elif program == "celery":
        assert argv[1] == "-A"
        importlib.import_module(argv[2])
        assert argv[3] in {"worker", "beat", "flower"}, argv
        if "-Q" in argv:
            assert set(argv[argv.index("-Q") + 1].split(",")) <= set(QUEUES), argv
    elif program == "devora":
        result = CliRunner().invoke(devora, [*argv[1:], "--help"])
        assert result.exit_code == 0, result.output
    else:
        raise AssertionError(f"unknown program {program}")


def app_services():
    return {name: s for name, s in COMPOSE["services"].items() if not s.get("image", "").startswith(THIRD_PARTY_IMAGES)}


@pytest.mark.parametrize("name", sorted(app_services()))
def test_every_compose_command_names_a_real_module(name):
    service = app_services()[name]
    assert service.get("build") == "." and service.get("image") == "devora-backend", "one image for all"
    check_command(service["command"])


def test_compose_runs_exactly_one_beat_and_the_whole_set():
    commands = {name: s.get("command", []) for name, s in COMPOSE["services"].items()}
    beats = [name for name, argv in commands.items() if argv[:4] == ["celery", "-A", "worker", "beat"]]
    assert beats == ["beat"] and COMPOSE["services"]["beat"]["deploy"]["replicas"] == 1
    assert {"redis", "cache", "postgres", "web", "worker", "beat", "flower"} <= set(COMPOSE["services"])
    served = {q for argv in commands.values() if "-Q" in argv for q in argv[argv.index("-Q") + 1].split(",")}
    assert served == set(QUEUES), "every queue has a worker"
    assert "noeviction" in COMPOSE["services"]["redis"]["command"]
    assert "allkeys-lru" in COMPOSE["services"]["cache"]["command"]


def test_every_service_has_a_healthcheck_that_parses():
    for name, service in COMPOSE["services"].items():
        if name == "migrate":
            continue
        check = service.get("healthcheck", {}).get("test")
        assert check, f"{name} has no healthcheck"
        if check[:3] == ["CMD", "python", "-c"]:
            compile(check[3], f"<{name} healthcheck>", "exec")


def test_every_variable_is_documented():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    for service in app_services().values():
        referenced |= set(service.get("environment", {}))
    missing = sorted(name for name in referenced if name not in DOCUMENTED)
    assert not missing, f"not in .env.example: {missing}"
    settings_names = {name.upper() for name in Settings.model_fields}
    app_env = set(COMPOSE["x-app"]["environment"])
    assert app_env <= settings_names, f"not settings: {app_env - settings_names}"


def test_dockerfile_and_procfile_commands_are_real():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    check_command(json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1)))
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        check_command([part for part in shlex.split(command) if not part.startswith("${")])
