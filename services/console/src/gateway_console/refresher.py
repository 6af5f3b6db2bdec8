"""The console's one loop: every GATEWAY_CONSOLE_REFRESH_S it reads Redis and asks the services,
then swaps in the new snapshot that every page renders from.

However many browsers watch, Redis sees one reader at the refresh rate; when it fails, the pages
keep the last snapshot and say since when it is old. Each turn beats the console's heartbeat
(GATEWAY_HEALTH_FILE, read by `gateway-healthcheck`); Redis unreachable is reported as a problem,
like the other services do. A stop asked for by the watchdog ends the web server.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from redis.exceptions import RedisError

from gateway_common.logs import get_logger
from gateway_console.readings import ReadingsIndex
from gateway_console.service_health import ServiceHealth, probe
from gateway_console.snapshot import collect_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis

    from gateway_common.health import Health
    from gateway_common.lifecycle import StopSignal
    from gateway_common.streams import StreamKeys
    from gateway_console.snapshot import Snapshot

__all__ = ["Refresher"]

log = get_logger(__name__)


class Refresher:
    def __init__(
        self,
        client: redis.Redis,
        keys: StreamKeys,
        *,
        health_urls: dict[str, str],
        interval_s: float,
        default_interval_s: float,
        health: Health,
        stop: StopSignal,
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.interval_s = interval_s
        self.default_interval_s = default_interval_s
        self.health_urls = health_urls
        self._index = ReadingsIndex(keys.records)
        self._health = health
        self._stop = stop
        self._on_stop = on_stop
        self.snapshot: Snapshot | None = None
        self.services: tuple[ServiceHealth, ...] = ()
        self.error: str | None = None
        """Why the last refresh failed (None after a good one)."""
        self.failed_since: float | None = None

    async def run(self) -> None:
        """Refresh until cancelled (the app's lifespan ends) or the watchdog asks to stop."""
        while not self._stop.is_set():
            await self.refresh()
            self._health.beat()
            await anyio.sleep(self.interval_s)
        log.warning("console_stopping", reason=self._stop.reason)
        self._on_stop()

    async def refresh(self) -> None:
        services: list[ServiceHealth] = []
        async with anyio.create_task_group() as group:
            group.start_soon(self._read_redis)
            for name, url in self.health_urls.items():
                group.start_soon(self._ask, services, name, url)
        order = list(self.health_urls)
        self.services = tuple(sorted(services, key=lambda s: order.index(s.name)))

    async def _ask(self, into: list[ServiceHealth], name: str, url: str) -> None:
        into.append(await anyio.to_thread.run_sync(probe, name, url))

    async def _read_redis(self) -> None:
        try:
            snapshot = await anyio.to_thread.run_sync(
                collect_snapshot, self.client, self.keys, self._index, self.default_interval_s
            )
        except RedisError as exc:
            if self.error is None:
                log.warning("redis_unavailable", error=str(exc))
                self.failed_since = time.time()
            self.error = f"Redis: {exc}"
            self._health.problem("redis", str(exc))
            return
        if self.error is not None:
            log.info("redis_available")
        self.error = None
        self.failed_since = None
        self._health.clear("redis")
        self.snapshot = snapshot
