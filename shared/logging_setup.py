"""Process-wide logging configuration."""
from __future__ import annotations

import logging

from shared.settings import Settings


def configure_logging(settings: Settings) -> None:
    """Plain lines to stderr; leave handlers alone when something already configured them."""
    root = logging.getLogger()
    if root.handlers:
        return
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
