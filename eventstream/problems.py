"""Problem+json answers for the stream process, in the same shape as the API's."""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.errors import DomainError
from shared.problem_details import PROBLEM_MIME, problem_body

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str | None = None, *, slug: str | None = None,
            headers: dict[str, str] | None = None, **extra) -> web.Response:
    body = problem_body(status, title, detail, slug=slug, **extra)
    return web.Response(status=status, body=json.dumps(body).encode(),
                        headers={**(headers or {}), "Content-Type": PROBLEM_MIME})


def domain_problem(error: DomainError) -> web.Response:
    return problem(error.status, error.title, error.detail, slug=error.type_slug, headers=error.headers,
                   **({"errors": error.errors} if error.errors is not None else {}), **error.extra)


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error this process answers is a problem, as on the API."""
    try:
        return await handler(request)
    except DomainError as error:
        return domain_problem(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return problem(error.status, error.reason, slug=error.reason.lower().replace(" ", "-"), headers=headers)
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal server error", "an unexpected error occurred; it has been logged",
                       slug="internal-error")
