"""Liveness probe."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from web.openapi import responses


class Health(BaseModel):
    status: str


bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="operations")])


@bp.get("/healthz", responses=responses({200: Health}))
def healthz():
    """The process is alive; checks nothing else, so it never fails on a dependency."""
    return {"status": "ok"}
