"""The live feed's WebSocket transport: authentication, origin check and close codes; a bounded
outbox per connection, paused by the socket's flow control; and frames built once per process and
written to the socket at once (ADR 0004, 0007)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Required, TypedDict
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host

from energy_dashboard.core import roles

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope

logger = logging.getLogger(__name__)

# Close codes in the 4000-4999 range that applications may use, mirroring HTTP statuses.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# The server could not go on writing to this connection (reconnect); autobahn refuses 1011 from
# an application.
CLOSE_INTERNAL_ERROR = 4500

# The longest text message a client may send; longer ones are answered with an error unread. A
# subscribe naming 500 names of 64 characters is about 34,000.
MAX_CLIENT_MESSAGE_CHARS = 64 * 1024


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

    async def __call__(self, scope: _ChannelScope, receive: Any, send: Any) -> Any:
        origin = next((v for k, v in scope.get("headers", []) if k == b"origin"), None)
        if origin is not None:
            host = urlparse(origin.decode("latin1")).hostname or ""
            if not validate_host(host, settings.ALLOWED_HOSTS):
                return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


def websocket_auth_stack(app: Any) -> Any:
    """Origin check, then session cookie or token authentication, then `app`."""
    return OriginCheck(AuthMiddlewareStack(TokenAuthMiddleware(app)))


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):
    """A JSON consumer that closes anonymous connections with 4401, and users with no role with 4403.

    The handshake is accepted first so that the client sees the close code: a refused
    handshake reaches a browser's script only as a bare failure.

    A client's frame that is not a JSON text (binary, not JSON, longer than
    MAX_CLIENT_MESSAGE_CHARS) is answered through `refuse` and the connection goes on.
    Channels' own `receive` raises on them instead, and an exception out of a handler ends the
    consumer without its `disconnect()`: daphne closes the socket with 1011 and whatever the
    consumer had joined stayed joined.
    """

    authenticated = False

    async def connect(self) -> None:
        user = self.scope.get("user") or AnonymousUser()
        await self.accept()
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(roles.can_view)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.authenticated = True
        await self.on_authenticated()

    async def on_authenticated(self) -> None:
        """Called once the user is known and may read."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Decode one client frame for `receive_json`, or answer why it cannot be read."""
        if not self.authenticated:
            return  # frames that follow a refusal (4401, 4403) before the client reads it
        if text_data is None:
            await self.refuse("binary_frame", "messages are JSON text frames, not binary ones")
            return
        if len(text_data) > MAX_CLIENT_MESSAGE_CHARS:
            await self.refuse(
                "message_too_large", f"a message may be at most {MAX_CLIENT_MESSAGE_CHARS} characters"
            )
            return
        try:
            content = await self.decode_json(text_data)
        except json.JSONDecodeError as exc:
            await self.refuse("invalid_json", f"not JSON: {exc}")
            return
        except (ValueError, RecursionError):
            # An integer of thousands of digits (ValueError), arrays nested past the decoder's
            # recursion limit (RecursionError).
            await self.refuse("invalid_json", "not JSON this server reads (too deep or too long a number)")
            return
        await self.receive_json(content, **kwargs)

    async def refuse(
        self, code: str, message: str, *, field: str | None = None, limit: int | None = None
    ) -> None:
        """Tell the client that its message was not taken: ``{"type": "error", "code", "message"}``,
        with the `field` at fault or the `limit` crossed when there is one."""
        await self.send_json(error_message(code, message, field=field, limit=limit))


class ErrorMessage(TypedDict, total=False):
    """What a client is told when its message is not taken; the connection goes on."""

    type: Required[Literal["error"]]
    code: Required[str]  # what is wrong, for programs: invalid_json, too_many_subscriptions...
    message: Required[str]  # the same for people
    field: str  # the message's field at fault
    limit: int  # the limit it crossed


def error_message(
    code: str, message: str, *, field: str | None = None, limit: int | None = None
) -> ErrorMessage:
    """The ``error`` a consumer answers a message it does not take with."""
    error: ErrorMessage = {"type": "error", "code": code, "message": message}
    if field is not None:
        error["field"] = field
    if limit is not None:
        error["limit"] = limit
    return error


class Outbox:
    """A bounded queue of text frames for one WebSocket: a slow client loses its oldest frames,
    never holds up the others, and is told how many it lost.

    `put` never waits. A writer task (`run`) sends frames while the connection is writable;
    the server's transport pauses it when its buffer is full (see `attach_flow_control`).
    When the queue is full the oldest frame is dropped and counted; before the next frame the
    client gets ``{"type": "lagging", "dropped": n, "dropped_total": total}`` so it can reload
    what it missed.
    """

    def __init__(self, send: Callable[[str], Awaitable[None]], *, limit: int) -> None:
        self._send = send
        self._limit = max(1, limit)
        self._frames: deque[str] = deque()
        self._ready = asyncio.Event()
        self._paused = False
        self.dropped_total = 0
        self._dropped_unreported = 0
        self._closed = False
        # Set by attach_flow_control under daphne: writes a frame to the socket's transport
        # now, without a task switch. A frame goes that way only when nothing waits before it.
        self.write_now: Callable[[str], None] | None = None

    def put(self, text: str) -> None:
        """Send one frame now when the socket takes it, else queue it; drop the oldest queued
        frame when full."""
        if self.write_now is not None and not (self._paused or self._frames or self._dropped_unreported):
            self.write_now(text)  # may pause us (Twisted calls pauseProducing inside write)
            return
        if self._closed:
            return  # the connection ended (close drops write_now, so the fast path is never taken)
        if len(self._frames) >= self._limit:
            self._frames.popleft()
            self.dropped_total += 1
            self._dropped_unreported += 1
        self._frames.append(text)
        self._update()

    def pause(self) -> None:
        """The transport's buffer is full: hold frames here until `resume`."""
        self._paused = True
        self._update()

    def resume(self) -> None:
        """The transport drained: send again."""
        self._paused = False
        self._update()

    def close(self) -> None:
        """The connection ended: drop what waits and take nothing more."""
        self._closed = True
        self.write_now = None
        self._frames.clear()
        self._dropped_unreported = 0
        self._ready.clear()

    @property
    def pending(self) -> int:
        """Frames waiting to be written."""
        return len(self._frames)

    def _update(self) -> None:
        if not self._paused and (self._frames or self._dropped_unreported):
            self._ready.set()
        else:
            self._ready.clear()

    async def run(self) -> None:
        """Write frames until cancelled (when the connection closes)."""
        while True:
            await self._ready.wait()
            if self._dropped_unreported:
                lost, total = self._dropped_unreported, self.dropped_total
                text = json.dumps({"type": "lagging", "dropped": lost, "dropped_total": total})
                self._dropped_unreported = 0
            else:
                text = self._frames.popleft()
            self._update()
            if self.write_now is not None:
                self.write_now(text)
            else:
                await self._send(text)


class _TransportProducer:
    """Twisted's push-producer protocol (IPushProducer) over an Outbox: Twisted calls
    pauseProducing when the socket's write buffer passes its high-water mark (64 KiB) and
    resumeProducing when it has drained. Daphne runs Twisted on the asyncio loop, so these
    calls happen on the consumer's own thread."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    # The method names are Twisted's.
    def pauseProducing(self) -> None:
        self.outbox.pause()

    def resumeProducing(self) -> None:
        self.outbox.resume()

    def stopProducing(self) -> None:
        self.outbox.pause()


def attach_flow_control(base_send: Any, outbox: Outbox) -> bool:
    """Let the server's socket buffer pause `outbox`; True when attached.

    ASGI gives an application no back-pressure on websocket.send: daphne writes each frame
    into Twisted's unbounded buffer at once. Daphne's `send` is a partial bound to its
    protocol object, whose transport accepts a push producer; under any other server (or
    Channels' test communicator) there is no socket to watch and the outbox only bounds
    what waits in the process.
    """
    send, protocol = base_send, None
    for _ in range(8):  # Channels' session middleware wraps send: follow its `real_send`
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            break
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            break
    transport: Any = getattr(protocol, "transport", None)  # Twisted's, untyped
    register = getattr(transport, "registerProducer", None)
    if register is None:
        return False
    producer = _TransportProducer(outbox)
    existing = getattr(transport, "producer", None)
    if existing is None:
        register(producer, True)
    elif not getattr(transport, "streamingProducer", False):
        logger.debug("websocket transport has a pull producer; no flow control")
        return False
    else:
        # Daphne upgrades an HTTP connection, and twisted.web's HTTPChannel stays registered
        # as the transport's push producer. Share the signals with it rather than replace it.
        transport.producer = _Both(existing, producer)
        if getattr(transport, "producerPaused", False):
            outbox.pause()
    if hasattr(protocol, "sendPreparedMessage"):
        outbox.write_now = functools.partial(_write_frame, protocol)
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        # Twisted leaves Nagle's algorithm on: a frame written while the previous one is not
        # yet acknowledged waits for the client's delayed ACK (up to 40 ms on Linux). That
        # was most of the live feed's median latency in bench/live.py.
        set_no_delay(True)
    return True


class _Both:
    """Two push producers that hear the same pause/resume/stop."""

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def pauseProducing(self) -> None:
        self.first.pauseProducing()
        self.second.pauseProducing()

    def resumeProducing(self) -> None:
        self.first.resumeProducing()
        self.second.resumeProducing()

    def stopProducing(self) -> None:
        self.first.stopProducing()
        self.second.stopProducing()


# Frames built once per text and process: the hub hands the same str object to every client
# of a group, so the first write frames it and the others send the same bytes. A handful are
# kept (by identity; the str is held so its id is not reused while cached).
_FRAMES: dict[int, tuple[str, Any]] = {}
_FRAMES_KEPT = 8


def _write_frame(protocol: Any, text: str) -> None:
    """Write `text` as one WebSocket text frame on daphne's (autobahn's) protocol, now."""
    if protocol.state != protocol.STATE_OPEN:
        if protocol.state == protocol.STATE_CONNECTING:
            protocol.serverSend(text, False)  # daphne's own way: accepts the handshake first
        # Closing or closed (the client left, or is leaving, while the hub delivered to it):
        # the frame has nowhere to go, and autobahn would raise Disconnected. The consumer
        # leaves the hub when the disconnect reaches it.
        return
    cached = _FRAMES.get(id(text))
    if cached is None or cached[0] is not text:
        from autobahn.websocket.protocol import PreparedMessage

        if len(_FRAMES) >= _FRAMES_KEPT:
            del _FRAMES[next(iter(_FRAMES))]
        cached = _FRAMES[id(text)] = (text, PreparedMessage(text.encode(), False, False, False))
    prepared = cached[1]
    transport = protocol.transport
    if getattr(protocol, "_perMessageCompress", None) is None and _socket_idle(transport):
        # Twisted's write only buffers the frame and asks the event loop to report the socket
        # writable (two epoll changes and a callback per frame); with nothing buffered before
        # it, the frame can go to the socket now. What the socket does not take is left to
        # Twisted, which keeps the order, buffers and pauses the outbox as usual.
        frame = prepared.payloadHybi
        try:
            sent = transport.socket.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # Twisted's own write below sees the connection's end and reports it
        if sent < len(frame):
            transport.write(frame[sent:])
        return
    protocol.sendPreparedMessage(prepared)


def _socket_idle(transport: Any) -> bool:
    """A plain TCP transport, connected, with nothing waiting in Twisted's write buffer."""
    return (
        getattr(transport, "TLS", True) is False
        and getattr(transport, "connected", False)
        and not getattr(transport, "disconnecting", True)
        and not getattr(transport, "_tempDataBuffer", True)
        and not getattr(transport, "dataBuffer", True)
        and getattr(transport, "socket", None) is not None
    )
