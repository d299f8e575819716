"""Liveness and readiness probes."""
from __future__ import annotations

import logging

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field
from sqlalchemy import text

from shared.errors import ServiceUnavailable
from shared.sandbox import Sandbox
from web.openapi import responses
from web.state import state

logger = logging.getLogger(__name__)
bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="operations")])


class Health(BaseModel):
    status: str


class SandboxState(BaseModel):
    state: Literal["available", "unavailable", "disabled-unsafe"] = Field(
        description="available: generated code runs in bubblewrap; unavailable: it will not run at all "
                    "(generation jobs fail); disabled-unsafe: it runs WITHOUT a sandbox, as allowed in development")
    detail: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
    sandbox: SandboxState = Field(description="The sandbox as this process finds it; never fails readiness")


@bp.get("/healthz", responses=responses({200: Health}))
def healthz():
    """The process is alive; checks nothing else, so it never fails on a dependency."""
    return Health(status="ok").model_dump()


@bp.get("/readyz", responses=responses({200: Readiness}, 503))
def readyz():
    """Database, Redis and broker reachable: 200; otherwise 503 naming what failed. Billing and the sandbox
    are reported, never failing readiness."""
    checks = {"database": _check(_database), "redis": _check(_redis), "broker": _check(_broker)}
    # Reported, not required: the API serves everything else without it, and a worker that has no
    # sandbox fails generation jobs with a message saying so.
    sandbox = Sandbox.from_settings(state().settings).status()
    described = {"state": sandbox.state, "detail": sandbox.detail}
    failed = sorted(name for name, result in checks.items() if result != "ok")
    # Reported, never failing readiness: outside production billing may be off on purpose.
    checks["billing"] = "ok" if state().settings.billing_enabled else "disabled (STRIPE_API_KEY is not set)"
    if failed:
        raise ServiceUnavailable(f"not ready: {', '.join(failed)} unreachable", checks=checks, sandbox=described,
                                 headers={"Retry-After": "5"})
    return Readiness(status="ready", checks=checks, sandbox=described).model_dump()


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready; the name is reported
        logger.warning("readiness check %s failed: %s", probe.__name__.strip("_"), type(error).__name__)
        return f"unreachable ({type(error).__name__})"


def _database() -> None:
    with state().db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _redis() -> None:
    state().redis.ping()


def _broker() -> None:
    producer = state().producer
    with producer.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=producer.conf.broker_connection_timeout)
