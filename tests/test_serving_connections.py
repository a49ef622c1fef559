"""Connections cannot hold ``emotion-ai serve`` hostage (issue 16's probes): a request that
never arrives whole is closed with 408, an idle keep-alive connection is closed, and beyond
the connection cap a new connection gets 503 at once; the log stays a few lines. Real HTTP
on 127.0.0.1, with the limits scaled down to seconds and a handful of sockets."""
from __future__ import annotations

import logging
import socket
import time

import pytest
import requests
from conftest import serve_in_thread

from emotion_ai.components import spec
from emotion_ai.serving import server as server_lib

REQUEST_SECONDS, KEEP_ALIVE, MAX_CONNECTIONS = 1.0, 1.0, 4


@pytest.fixture(scope="module")
def address(tmp_path_factory):
    app = server_lib.create_app(tmp_path_factory.mktemp("empty_repo"), poll_seconds=5)
    with serve_in_thread(app, request_seconds=REQUEST_SECONDS, keep_alive_seconds=KEEP_ALIVE,
                         max_connections=MAX_CONNECTIONS) as address:
        yield address


def _connect(address) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    return sock


def _read_all(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and when it closed (monotonic)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic()


def _read_response(sock: socket.socket) -> bytes:
    """One whole response of a keep-alive connection (its head, then content-length bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _healthy(address) -> None:
    answer = requests.get(f"http://{address[0]}:{address[1]}/v1/models/nothing", timeout=5)
    assert answer.status_code == 404 and "error" in answer.json()


def test_a_connection_that_sends_nothing_is_closed_with_408(address):
    start = time.monotonic()
    with _connect(address) as sock:
        data, closed = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 408 ") and b"did not arrive whole within 1 s" in data
    assert REQUEST_SECONDS * 0.9 <= closed - start < REQUEST_SECONDS + 3
    _healthy(address)


def test_headers_dripped_a_byte_at_a_time_are_cut_off(address):
    start = time.monotonic()
    request = b"GET /v1/models/emotion HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with _connect(address) as sock:
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert closed - start < REQUEST_SECONDS + 3, "not kept open while bytes trickle in"
    _healthy(address)


def test_a_body_at_a_byte_a_second_is_cut_off(address):
    start = time.monotonic()
    with _connect(address) as sock:
        sock.sendall(b"POST /v1/models/emotion:predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 1000\r\n\r\n{")
        try:
            for _ in range(10):
                time.sleep(0.3)
                sock.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = _read_all(sock)
    assert closed - start < REQUEST_SECONDS + 3
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data[:200]
    _healthy(address)


def test_a_client_that_leaves_mid_body_is_not_a_server_error(address, caplog):
    """The soak benchmark's abandoned bodies each logged an ERROR with a traceback
    (starlette's ClientDisconnect): a client's doing is not the server's error."""
    with caplog.at_level(logging.INFO, logger="emotion_ai.serve"):
        for _ in range(3):
            with _connect(address) as sock:
                sock.sendall(b"POST /v1/models/emotion:predict HTTP/1.1\r\nHost: x\r\n"
                             b"content-length: 999\r\n\r\n{")
                time.sleep(0.1)
        time.sleep(0.5)
        _healthy(address)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not(address):
    with _connect(address) as sock:
        for _ in range(3):  # requests in quick succession keep the connection
            sock.sendall(b"GET /v1/models/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            head = _read_response(sock)
            idle_from = time.monotonic()
            assert head.startswith(b"HTTP/1.1 404 ")
            time.sleep(0.3)
        data, closed = _read_all(sock)
    assert data == b"" and KEEP_ALIVE * 0.9 <= closed - idle_from < KEEP_ALIVE + 3


def test_beyond_the_connection_cap_a_new_connection_gets_503_at_once_and_the_log_stays_short(address, caplog):
    held = [_connect(address) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        with caplog.at_level(logging.WARNING, logger="emotion_ai.serve"):
            answers = []
            for _ in range(30):
                with _connect(address) as sock:
                    start = time.monotonic()
                    data, closed = _read_all(sock)
                    answers.append((data, closed - start))
        assert all(d.startswith(b"HTTP/1.1 503 ") and b"too many connections" in d for d, _ in answers)
        assert max(t for _, t in answers) < 0.5, "refused at once, not after a timeout"
        refusals = [r for r in caplog.records if "open connections" in r.getMessage()]
        assert 1 <= len(refusals) <= 2, [r.getMessage() for r in caplog.records]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    _healthy(address)


def test_the_served_limits_are_the_configured_ones():
    config = server_lib.uvicorn_config(object(), "127.0.0.1", 1)
    assert config.http.request_seconds == spec.SERVING_REQUEST_SECONDS
    assert config.http.max_connections == spec.SERVING_MAX_CONNECTIONS
    assert config.timeout_keep_alive == spec.SERVING_KEEP_ALIVE_SECONDS
    assert spec.SERVING_MAX_CONNECTIONS < 1024 - 64, "the cap leaves file descriptors for models and logs"
