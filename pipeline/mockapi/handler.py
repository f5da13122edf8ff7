"""HTTP/1.1 on the socket: the request handler, gzip, and the threading server.

The server runs one thread per keep-alive connection; each response goes out in one write.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import sys
import threading
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from pipeline.mockapi.replies import _error_reply, _Reply

if TYPE_CHECKING:
    from pipeline.mockapi.server import MockServer

logger = logging.getLogger(__name__)

_MAX_BODY_BYTES = 1 << 20
_GZIP_LEVEL = 1  # fast: the mock must not become the bottleneck it is meant to measure


def accepts_gzip(accept_encoding: str) -> bool:
    """True if an `Accept-Encoding` header value allows gzip (and not with q=0)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        name, _, value = params.partition("=")
        if name.strip().lower() != "q":
            return True
        try:
            return float(value) > 0
        except ValueError:
            return False
    return False


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip header, mtime 0
    return compressor.compress(data) + compressor.flush()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; each response goes out in one write, Content-Length always."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no stderr line per request."""

    def _serve(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            reply = _error_reply(400, "bad or missing Content-Length", "CALC_001")
        else:
            token = self.headers.get("partner-token")
            reply = self.server.mock._answer(method, self.path, body, token)
        self._send(reply)

    def _read_body(self) -> bytes | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None if self.headers.get("Transfer-Encoding") else b""
        try:
            length = int(raw)
        except ValueError:
            return None
        if not 0 <= length <= _MAX_BODY_BYTES:
            return None
        return self.rfile.read(length)

    def _send(self, reply: _Reply) -> None:
        body = reply.body
        lines = [f"HTTP/1.1 {reply.status} {_phrase(reply.status)}"]
        lines.extend(f"{name}: {value}" for name, value in reply.headers.items())
        if accepts_gzip(self.headers.get("Accept-Encoding", "")):
            body = _gzip(body)
            lines.append("Content-Encoding: gzip")
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class _HTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection; tracks connections so `stop()` can close them."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], mock: MockServer) -> None:
        self.mock = mock
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def close_connections(self) -> None:
        with self._open_lock:
            for connection in self._open:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client went away mid-request: normal for a load test
        logger.exception("mock API: error while answering %s", client_address)
