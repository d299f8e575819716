"""`python -m eventstream [--host H] [--port P]`: serve the event stream until SIGTERM or SIGINT."""
from __future__ import annotations

import argparse
import logging
import resource

from aiohttp import web

from eventstream.access_log import AccessLog
from eventstream.app import create_app
from shared.logging_setup import configure_logging
from shared.settings import load_settings

logger = logging.getLogger("eventstream")
# Descriptors beyond the streams themselves: Redis, the database, listening sockets, logs.
SPARE_DESCRIPTORS = 64


def raise_descriptor_limit(streams: int) -> None:
    """Lift the soft open-files limit to the hard one; warn when even that cannot hold every stream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = streams + SPARE_DESCRIPTORS
    if soft < wanted and soft != resource.RLIM_INFINITY:
        soft = hard if hard == resource.RLIM_INFINITY else min(hard, max(wanted, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        logger.warning("open-files limit %s is below EVENTS_MAX_STREAMS_PER_PROCESS + %s; raise `ulimit -n`",
                       soft, SPARE_DESCRIPTORS)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m eventstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: EVENTS_PORT")
    args = parser.parse_args()
    settings = load_settings()
    configure_logging(settings)
    raise_descriptor_limit(settings.events_max_streams_per_process)
    port = args.port or settings.events_port
    logger.info("event stream listening on http://%s:%s/api/v2/events", args.host, port)
    # handler_cancellation: a client that hangs up frees its slot at once, not at the next ping.
    web.run_app(create_app(settings), host=args.host, port=port, access_log_class=AccessLog,
                handler_cancellation=True, shutdown_timeout=5, print=None)


if __name__ == "__main__":
    main()
