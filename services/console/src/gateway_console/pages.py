"""The console's pages and their live parts (HTML fragments the pages fetch to update themselves).

Every route only reads: GET (and HEAD) only, nothing changes state. Query values are checked
against what each page accepts, and anything else is answered 400 (an unknown device 404),
never with a traceback. Overview and device list render from the refresher's snapshot; the
device history and the dead letters are read from Redis on request.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse
from starlette.routing import Route

from gateway_console.history import SOURCE, read_history
from gateway_console.plots import device_plots
from gateway_console.service_health import gauge
from gateway_ctl.dead import list_dead

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from jinja2 import Environment
    from starlette.requests import Request
    from starlette.responses import Response

    from gateway_console.refresher import Refresher
    from gateway_console.snapshot import DeviceView

__all__ = ["DEVICE_ID", "SORT_KEYS", "routes", "windows_h"]

DEVICE_ID: Final = re.compile(r"[0-9A-F]{1,16}")
SEARCH: Final = re.compile(r"[0-9A-Za-z _.\-]{0,64}")
#: The device page's windows, those the history reaches back to (`windows_h`), and the one shown
#: when none is asked for: a day, whatever longer ones the frames archive offers.
WINDOWS_H: Final = (1, 6, 24, 72, 168)
DEFAULT_WINDOW_H: Final = 24
DEAD_LIMIT_MAX: Final = 1000
DEAD_LIMIT: Final = 100
#: A gap in a plot: silence longer than this many reporting intervals.
GAP_INTERVALS: Final = 2.5
#: Pages are sent as they are rendered, in pieces of about this size: a list of 500 devices is
#: never held whole in memory (the console's budget is 60 MB).
CHUNK_BYTES: Final = 32_768


def _chunks(pieces: Iterator[str]) -> Iterator[bytes]:
    buffer: list[str] = []
    size = 0
    for piece in pieces:
        buffer.append(piece)
        size += len(piece)
        if size >= CHUNK_BYTES:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    yield "".join(buffer).encode()


def _last_seen(d: DeviceView) -> float:
    return d.row.entry.last_seen if d.row.entry else 0.0


def _link_budget(d: DeviceView) -> float:
    return d.row.entry.last_link_budget if d.row.entry else 1e9


def _readings_24h(d: DeviceView) -> int:
    return d.readings.last_24h if d.readings else 0


def _interval(d: DeviceView) -> float:
    return d.row.stale_after_s or 0.0


SORT_KEYS: Final[dict[str, Callable[[DeviceView], Any]]] = {
    "id": lambda d: d.device_id,
    "last_seen": _last_seen,
    "stale": lambda d: (not d.row.stale, d.device_id),
    "link_budget": _link_budget,
    "readings_24h": _readings_24h,
    "interval": _interval,
}


def _query(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise HTTPException(400, f"unknown query parameter {unknown[0]!r}")
    return dict(request.query_params)


def _choice(query: dict[str, str], name: str, allowed: Sequence[str], default: str) -> str:
    value = query.get(name, default)
    if value not in allowed:
        raise HTTPException(400, f"{name} must be one of {', '.join(allowed)}")
    return value


def _whole(query: dict[str, str], name: str, low: int, high: int, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}")
    return int(text)


def windows_h(max_window_s: float) -> tuple[int, ...]:
    """The windows (hours) within `max_window_s`, the frames archive's retention; the shortest
    one always (an archive kept less than an hour shows what it holds)."""
    return tuple(h for h in WINDOWS_H if h * 3600 <= max_window_s) or WINDOWS_H[:1]


class Pages:
    def __init__(self, templates: Environment, refresher: Refresher, max_window_s: float) -> None:
        self._templates = templates
        self._refresher = refresher
        self._windows = windows_h(max_window_s)
        self._default_window = min(DEFAULT_WINDOW_H, self._windows[-1])

    def _hours(self, request: Request) -> int:
        query = _query(request, ("hours",))
        allowed = [str(h) for h in self._windows]
        return int(_choice(query, "hours", allowed, str(self._default_window)))

    def _render(self, request: Request, name: str, **context: Any) -> Response:
        refresher = self._refresher
        base = {
            "snapshot": refresher.snapshot,
            "services": refresher.services,
            "error": refresher.error,
            "failed_since": refresher.failed_since,
            "refresh_s": refresher.interval_s,
            "default_interval_s": refresher.default_interval_s,
            "prefix": refresher.keys.prefix,
            "gauge": lambda short: gauge(refresher.services, short),
            "health_configured": bool(refresher.health_urls),
        }
        template = self._templates.get_template(name)
        pieces = template.generate({"request": request, **base, **context})
        return StreamingResponse(_chunks(pieces), media_type="text/html; charset=utf-8")

    # ---- overview

    async def overview(self, request: Request) -> Response:
        _query(request, ())
        part = request.url.path.startswith("/parts/")
        return self._render(request, "_overview.html" if part else "overview.html")

    # ---- devices

    def _device_list(self, request: Request) -> dict[str, Any]:
        query = _query(request, ("q", "sort", "order"))
        sort = _choice(query, "sort", tuple(SORT_KEYS), "id")
        order = _choice(query, "order", ("asc", "desc"), "asc")
        search = query.get("q", "").strip()
        if not SEARCH.fullmatch(search):
            raise HTTPException(400, "q: letters, digits, space, '.', '_' and '-' only, 64 at most")
        snapshot = self._refresher.snapshot
        devices = [] if snapshot is None else list(snapshot.devices)
        if search:
            devices = [d for d in devices if search.upper() in d.device_id]
        devices.sort(key=SORT_KEYS[sort], reverse=order == "desc")
        return {"devices": devices, "sort": sort, "order": order, "q": search}

    async def devices(self, request: Request) -> Response:
        context = self._device_list(request)
        part = request.url.path.startswith("/parts/")
        return self._render(request, "_devices.html" if part else "devices.html", **context)

    # ---- one device

    def _device(self, request: Request) -> tuple[str, DeviceView | None]:
        device_id = request.path_params["device_id"]
        if not DEVICE_ID.fullmatch(device_id):
            raise HTTPException(404, "not a device id (hexadecimal, upper case, up to 16 digits)")
        snapshot = self._refresher.snapshot
        view = None if snapshot is None else snapshot.device(device_id)
        if snapshot is not None and view is None:
            raise HTTPException(404, f"no device {device_id} in {self._refresher.keys.devices}")
        return device_id, view

    async def device(self, request: Request) -> Response:
        hours = self._hours(request)
        device_id, view = self._device(request)
        return self._render(
            request,
            "device.html",
            device_id=device_id,
            view=view,
            hours=hours,
            windows=self._windows,
        )

    async def device_latest(self, request: Request) -> Response:
        _query(request, ())
        device_id, view = self._device(request)
        return self._render(request, "_device_latest.html", device_id=device_id, view=view)

    async def device_plots(self, request: Request) -> Response:
        hours = self._hours(request)
        device_id, view = self._device(request)
        refresher = self._refresher
        end = refresher.snapshot.taken_at if refresher.snapshot else time.time()
        start = end - hours * 3600.0
        try:
            points = await anyio.to_thread.run_sync(
                read_history, refresher.client, refresher.keys, device_id, start
            )
        except RedisError as exc:
            raise HTTPException(503, f"Redis: {exc}") from exc
        entry = view.row.entry if view else None
        interval = (entry.interval_s if entry else None) or refresher.default_interval_s
        plots = device_plots(points, start=start, end=end, gap_s=GAP_INTERVALS * interval)
        return self._render(
            request,
            "_plots.html",
            device_id=device_id,
            plots=plots,
            points=points,
            invalid=sum(1 for p in points if p.energy and not p.valid),
            hours=hours,
            source=SOURCE,
            gap_s=GAP_INTERVALS * interval,
        )

    # ---- dead letters

    async def dead(self, request: Request) -> Response:
        query = _query(request, ("limit",))
        limit = _whole(query, "limit", 1, DEAD_LIMIT_MAX, DEAD_LIMIT)
        refresher = self._refresher
        try:
            total, letters = await anyio.to_thread.run_sync(
                lambda: list_dead(refresher.client, refresher.keys, limit, newest=True)
            )
        except RedisError as exc:
            raise HTTPException(503, f"Redis: {exc}") from exc
        part = request.url.path.startswith("/parts/")
        return self._render(
            request,
            "_dead.html" if part else "dead.html",
            total=total,
            letters=letters,
            limit=limit,
        )


def routes(pages: Pages) -> list[Route]:
    return [
        Route("/", pages.overview, name="overview"),
        Route("/parts/overview", pages.overview),
        Route("/devices", pages.devices, name="devices"),
        Route("/parts/devices", pages.devices),
        Route("/devices/{device_id}", pages.device, name="device"),
        Route("/parts/devices/{device_id}/latest", pages.device_latest),
        Route("/parts/devices/{device_id}/plots", pages.device_plots),
        Route("/dead", pages.dead, name="dead"),
        Route("/parts/dead", pages.dead),
    ]
