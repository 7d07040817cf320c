"""WebSocket plumbing shared by every consumer: authentication, origin check, close codes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host

from energy_dashboard import roles

# Close codes in the 4000-4999 range that applications may use, mirroring HTTP statuses.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    try:
        token = Token.objects.select_related("user").get(key=key)
    except Token.DoesNotExist:
        return AnonymousUser()
    return token.user if token.user.is_active else AnonymousUser()


class TokenAuthMiddleware:
    """Authenticates non-browser clients by `Authorization: Token <key>`, as the REST API does.

    Runs inside Channels' session authentication, so a browser's session cookie still works;
    a token, when sent, takes precedence.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, key = value.decode("latin1").partition(" ")
                if scheme.lower() == "token" and key.strip():
                    scope = dict(scope, user=await _user_for_token(key.strip()))
                break
        return await self.app(scope, receive, send)


class OriginCheck:
    """Refuses cross-site WebSocket connections from browsers.

    Browsers always send Origin on a WebSocket handshake, so a page of another site cannot
    ride the session cookie here. Clients that send no Origin are not browsers: they carry no
    ambient credentials and must authenticate with a token, so they pass.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = next((v for k, v in scope.get("headers", []) if k == b"origin"), None)
        if origin is not None:
            host = urlparse(origin.decode("latin1")).hostname or ""
            if not validate_host(host, settings.ALLOWED_HOSTS):
                return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


def websocket_auth_stack(app: Any) -> Any:
    """Origin check, then session cookie or token authentication, then `app`."""
    return OriginCheck(AuthMiddlewareStack(TokenAuthMiddleware(app)))


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """A JSON consumer that closes anonymous connections with 4401, and users with no role with 4403.

    The handshake is accepted first so that the client sees the close code: a refused
    handshake reaches a browser's script only as a bare failure.
    """

    async def connect(self) -> None:
        user = self.scope.get("user") or AnonymousUser()
        await self.accept()
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(roles.can_view)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.on_authenticated()

    async def on_authenticated(self) -> None:
        """Called once the user is known and may read."""
