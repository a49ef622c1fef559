"""What one connection may cost ``emotion-ai serve``: time to send a request, idle time, and
how many connections may be open at once (limits in ``components.spec``).

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but not a connection
that never finishes its request: one that sends nothing, sends its headers a byte at a
time, or a body at 1 byte/s holds a socket forever, and enough of them exhaust the file
descriptors (then asyncio logs every failed ``accept``). ``BoundedH11Protocol`` is uvicorn's
h11 protocol with two additions: a request must arrive whole within
``SERVING_REQUEST_SECONDS`` of its first byte (or of the connection's start), else the
connection is closed (408 if nothing was answered yet); and beyond
``SERVING_MAX_CONNECTIONS`` open connections, a new one gets 503 and is closed at once.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from emotion_ai.components import spec

log = logging.getLogger("emotion_ai.serve")


def _canned(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class _RateLimitedWarning:
    """One log line per ``every`` seconds for a kind of event, with the count since: a flood
    of bad connections must not become a flood of log lines."""

    def __init__(self, every: float = 10.0):
        self.every, self.last, self.count = every, 0.0, 0

    def __call__(self, message: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            log.warning("%s (%d since the last such line)", message, self.count)
            self.last, self.count = now, 0


_too_many = _RateLimitedWarning()
_too_slow = _RateLimitedWarning()


class BoundedH11Protocol(H11Protocol):
    request_seconds = spec.SERVING_REQUEST_SECONDS
    max_connections = spec.SERVING_MAX_CONNECTIONS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._request_deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            _too_many(f"over {self.max_connections} open connections: new ones answered 503 and closed")
            transport.write(_canned(503, "Service Unavailable", f"too many connections (over {self.max_connections})"))
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        if self._request_deadline is None:
            self._request_deadline = self.loop.call_later(self.request_seconds, self._request_too_slow)

    def _disarm(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._arm()  # the first byte of a request (after idling) starts its clock
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the request is whole (or the connection is done)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:
            self._disarm()  # idle now: uvicorn's keep-alive timeout applies until the next byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _request_too_slow(self) -> None:
        self._request_deadline = None
        if self.transport.is_closing():
            return
        _too_slow(f"a request not whole after {self.request_seconds:g} s: connection closed")
        answered = self.cycle is not None and self.cycle.response_started
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not answered:
            self.transport.write(_canned(408, "Request Timeout",
                                         f"the request did not arrive whole within {self.request_seconds:g} s"))
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.close()
