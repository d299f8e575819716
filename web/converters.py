"""URL converters."""
from __future__ import annotations

import re
import uuid

from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter, PathConverter


class FilePathConverter(PathConverter):
    """Captures any file path, control characters and a leading '/' included.

    Werkzeug's own `path` converter stops at a newline and cannot start with '/',
    which would turn those bad paths into a 404; here they reach the path check
    and get a 422 that says what is wrong.
    """

    regex = r"[\s\S]+?"
    part_isolating = False


class IdConverter(BaseConverter):
    """The `uuid` converter, with a 404 problem that names the bad id instead of a generic one.

    Werkzeug's own converter refuses a malformed id by not matching the route, which
    leaves only "nothing here"; this one matches any segment and says why it is not found.
    """

    regex = r"[^/]+"
    _CANONICAL = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")

    def to_python(self, value: str) -> uuid.UUID:
        if not self._CANONICAL.fullmatch(value):
            raise NotFound(f"nothing has the id {value[:80]!r}: ids are UUIDs such as "
                           "3f2b8c1e-6d4a-4f0e-9b7a-2c5d8e1f0a9b")
        return uuid.UUID(value)

    def to_url(self, value: uuid.UUID) -> str:
        return str(value)
