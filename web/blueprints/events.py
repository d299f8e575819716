"""Stream tokens for the live job event stream (the stream itself is served by `devora stream`)."""
from __future__ import annotations

from datetime import UTC, datetime

from flask_openapi3 import APIBlueprint, Tag

from shared.events import EVENTS_PATH
from shared.schemas.events import StreamTokenOut
from web.auth import bearer_claims, current_user
from web.openapi import BEARER, responses
from web.state import state

bp = APIBlueprint("events", __name__, url_prefix=EVENTS_PATH, abp_tags=[Tag(name="events")], abp_security=BEARER)


@bp.post("/token", responses=responses({201: StreamTokenOut}, 401))
def issue_stream_token():
    """A token lasting minutes that lets the browser's EventSource read the caller's job events, and nothing else."""
    user = current_user()
    app_state = state()
    # Bound to the caller's login: once it is logged out, the stream refuses the token too.
    token, expires = app_state.stream_tokens.issue(user.id, bearer_claims().session_id)
    body = StreamTokenOut(token=token, expires_in=app_state.stream_tokens.ttl,
                          expires_at=datetime.fromtimestamp(expires, UTC),
                          stream_url=app_state.settings.events_public_url or EVENTS_PATH)
    return body.model_dump(mode="json"), 201, {"Cache-Control": "no-store"}
