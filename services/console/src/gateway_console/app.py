"""The console as an ASGI application (Starlette): routes, templates, static files, middleware,
and the refresher running for the application's lifetime."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
import anyio.to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from gateway_console import filters
from gateway_console.auth import BasicAuth
from gateway_console.headers import SecurityHeaders
from gateway_console.pages import Pages, routes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request
    from starlette.responses import Response

    from gateway_console.refresher import Refresher

__all__ = ["create_app"]

HERE: Final = Path(__file__).parent
#: Nothing is ever posted to the console: any request body is refused beyond this size.
MAX_BODY_BYTES: Final = 1024
#: Threads for Redis reads, the services' health and streamed pages, all short.
WORKER_THREADS: Final = 2


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters.install(env)
    return env


def create_app(
    refresher: Refresher, *, user: str, password: str | None, max_window_s: float
) -> Starlette:
    """The console; `password` None serves it without authentication (GATEWAY_CONSOLE_AUTH=off);
    `max_window_s` is how far back the device plots can reach (GATEWAY_FRAMES_RETENTION_S)."""
    templates = _templates()

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        page = templates.get_template("error.html").render(
            status=exc.status_code, detail=exc.detail, prefix=refresher.keys.prefix
        )
        return HTMLResponse(page, status_code=exc.status_code, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Few worker threads: each one that allocates keeps a malloc arena (memory budget).
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        async with anyio.create_task_group() as group:
            group.start_soon(refresher.run)
            yield
            group.cancel_scope.cancel()

    middleware = [Middleware(SecurityHeaders)]
    if password is not None:
        middleware.append(Middleware(BasicAuth, user=user, password=password))
    return Starlette(
        routes=[
            *routes(Pages(templates, refresher, max_window_s)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
