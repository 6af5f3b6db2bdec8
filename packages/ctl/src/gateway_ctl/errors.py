"""What makes gatewayctl exit 1: Redis unreachable or refusing, or an operation that failed.

(Bad settings and bad arguments exit 2, from `load_settings` and argparse.)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import ResponseError

from gateway_common.redis_conn import REDIS_UNAVAILABLE, connect

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "CtlError", "redact", "redis_session"]

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


class CtlError(Exception):
    """An operation that failed; the message is printed as `gatewayctl: <message>`."""


def redact(url: str) -> str:
    """The URL without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def redis_session(url: str) -> Iterator[redis.Redis]:
    """A client for `url`, closed afterwards; Redis errors become `CtlError`s."""
    client = connect(url, health_checks=False)  # reads must work while Redis cannot persist
    try:
        yield client
    except REDIS_UNAVAILABLE as exc:
        raise CtlError(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    except ResponseError as exc:
        raise CtlError(f"Redis refused a command: {exc}") from exc
    finally:
        client.close()
