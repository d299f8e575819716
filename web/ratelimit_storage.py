"""A rate-limit storage that answers a request's limit check and its headers in one Redis round trip.

Flask-Limiter's sliding-window counter makes two: the hit (a Lua script that answers only
yes or no), then a second script to read the window for the `X-RateLimit-*` headers, and no
setting merges them. This storage's hit runs one script that takes the entry and returns
the window it leaves, and keeps that window for the header read that follows on the same
thread. Everything else (keys, the window arithmetic, the in-memory fallback when Redis is
down) stays the library's.

Selected with a `devora+redis://` (or `devora+rediss://`) storage URI; limits registers the
scheme from STORAGE_SCHEME.
"""
from __future__ import annotations

import threading
import time

from limits.storage import RedisStorage

# The library's acquire_sliding_window.lua, returning the window after the hit as well as
# whether it was taken: {taken, previous count, previous ttl ms, current count, current ttl ms}.
ACQUIRE_AND_READ = """
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local amount = tonumber(ARGV[3])

local current_ttl = tonumber(redis.call('pttl', KEYS[2]))
if current_ttl > 0 and current_ttl < expiry then
    -- The current window has ended: it becomes the previous one.
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PX', current_ttl + expiry)
end

local previous_count = tonumber(redis.call('get', KEYS[1])) or 0
local previous_ttl = math.max(tonumber(redis.call('pttl', KEYS[1])) or 0, 0)
local current_count = tonumber(redis.call('get', KEYS[2])) or 0
current_ttl = math.max(tonumber(redis.call('pttl', KEYS[2])) or 0, 0)

local weighted_count = math.floor(previous_count * previous_ttl / expiry) + current_count
if amount > limit or weighted_count + amount > limit then
    return {0, previous_count, previous_ttl, current_count, current_ttl}
end
if redis.call('exists', KEYS[2]) == 1 then
    current_count = redis.call('incrby', KEYS[2], amount)
else
    redis.call('set', KEYS[2], amount, 'PX', expiry * 2)
    current_count = amount
    current_ttl = expiry * 2
end
return {1, previous_count, previous_ttl, current_count, current_ttl}
"""
# A kept window answers only the header read of the request that made it.
WINDOW_KEPT_SECONDS = 1.0


class OneTripRedisStorage(RedisStorage):
    """RedisStorage whose sliding-window hit also returns the window the headers need."""

    STORAGE_SCHEME = ["devora+redis", "devora+rediss"]

    def __init__(self, uri: str, **options) -> None:
        self._windows = threading.local()
        super().__init__(uri.removeprefix("devora+"), **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_acquire_and_read = self.get_connection().register_script(ACQUIRE_AND_READ)

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        previous_key = self.prefixed_key(self._previous_window_key(key))
        current_key = self.prefixed_key(self._current_window_key(key))
        taken, previous_count, previous_ttl, current_count, current_ttl = self.lua_acquire_and_read(
            [previous_key, current_key], [limit, expiry, amount])
        window = (int(previous_count), int(previous_ttl) / 1000, int(current_count), int(current_ttl) / 1000)
        self._windows.kept = (key, expiry, window, time.monotonic())
        return bool(taken)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        kept = getattr(self._windows, "kept", None)
        if kept is not None:
            self._windows.kept = None
            kept_key, kept_expiry, window, at = kept
            if (kept_key, kept_expiry) == (key, expiry) and time.monotonic() - at < WINDOW_KEPT_SECONDS:
                return window
        return super().get_sliding_window(key, expiry)
