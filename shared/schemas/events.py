"""The stream token the browser's EventSource uses."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class StreamTokenOut(BaseModel):
    token: str = Field(description="Pass as `?token=` to the stream; it allows only reading your job events")
    token_type: str = Field("stream", pattern="^stream$")
    expires_in: int = Field(description="Seconds until the token expires; an open stream is not cut when it does")
    expires_at: datetime
    stream_url: str = Field(description="Where to open the stream (GET, text/event-stream): add `?token=`, "
                                        "optionally `job_id=` and `last_event_id=`")

