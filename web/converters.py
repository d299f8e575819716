"""URL converters."""
from __future__ import annotations

from werkzeug.routing import PathConverter


class FilePathConverter(PathConverter):
    """Captures any file path, control characters and a leading '/' included.

    Werkzeug's own `path` converter stops at a newline and cannot start with '/',
    which would turn those bad paths into a 404; here they reach the path check
    and get a 422 that says what is wrong.
    """

    regex = r"[\s\S]+?"
    part_isolating = False
