"""What is waiting in the broker: messages per queue, read without consuming anything."""
from __future__ import annotations

import logging

from celery import Celery
from kombu.exceptions import ChannelError

from shared.taskqueue import QUEUES

logger = logging.getLogger(__name__)


def queue_depths(app: Celery) -> dict[str, int | None]:
    """Messages ready in each queue; None for a queue that could not be read (broker down)."""
    depths: dict[str, int | None] = {}
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=app.conf.broker_connection_timeout)
            for name in QUEUES:
                depths[name] = _depth(connection, name)
    except Exception as error:  # noqa: BLE001 - depths are advisory; report what could not be read
        logger.warning("queue depths unavailable: %s", type(error).__name__)
        depths.update({name: None for name in QUEUES if name not in depths})
    return depths


def _depth(connection, name: str) -> int:
    # A passive declare reports the message count on Redis and RabbitMQ alike. A queue
    # nobody declared yet does not exist (an empty Redis list), and a failed passive
    # declare closes a RabbitMQ channel, hence a channel per queue.
    with connection.channel() as channel:
        try:
            return channel.queue_declare(queue=name, passive=True).message_count
        except ChannelError:
            return 0


def worker_count(app: Celery, timeout: float = 1.0) -> int | None:
    """Workers answering a broadcast ping within `timeout`; None when the broker cannot be reached."""
    try:
        return len(app.control.ping(timeout=timeout) or [])
    except Exception as error:  # noqa: BLE001 - advisory, like the depths
        logger.warning("worker ping failed: %s", type(error).__name__)
        return None
