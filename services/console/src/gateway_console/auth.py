"""HTTP basic auth in front of every path of the console (an ASGI middleware).

The user name and the password are compared in constant time (`hmac.compare_digest` over their
UTF-8 bytes, both always compared), so the answer's timing tells nothing about either. The
password is never logged, shown or sent back.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING, Final

from starlette.responses import PlainTextResponse

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["REALM", "BasicAuth", "credentials_match"]

REALM: Final = "gateway console"


def credentials_match(header: bytes | None, user: bytes, password: bytes) -> bool:
    """Whether an `Authorization` header carries exactly this user and password."""
    if header is None:
        return False
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    given_user, sep, given_password = given.partition(b":")
    user_ok = hmac.compare_digest(given_user, user)
    password_ok = hmac.compare_digest(given_password, password)
    return bool(sep) and user_ok and password_ok


class BasicAuth:
    """Answers 401 (with a `WWW-Authenticate` challenge) to any request without the password."""

    def __init__(self, app: ASGIApp, *, user: str, password: str) -> None:
        self._app = app
        self._user = user.encode()
        self._password = password.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization")
        if credentials_match(header, self._user, self._password):
            await self._app(scope, receive, send)
            return
        response = PlainTextResponse(
            "401: this console needs the user name and password of this gateway\n",
            status_code=401,
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )
        await response(scope, receive, send)
