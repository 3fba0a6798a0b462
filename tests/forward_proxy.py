"""A forward HTTP proxy on loopback that records what passes and reaches only the routes it is given.

Clients address it as any HTTP proxy (``GET http://host:port/path HTTP/1.1``). A request for a route
it knows is sent on to that route's real address, headers as sent (``Host`` included), minus the
hop-by-hop ones; any other is answered 502 without a connection being made, so nothing leaves
loopback through it.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade", "content-length"}
)  # fmt: skip


@dataclass
class Forwarded:
    method: str
    url: str  # absolute, as the client asked for it
    headers: dict[str, str]  # as the client sent them, Proxy-Authorization included


class ForwardProxy:
    """:param routes: ``{"host:port" the clients ask for: ("127.0.0.1", port) it is served at}``."""

    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self.routes = routes
        self.seen: list[Forwarded] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                proxy.seen.append(Forwarded(self.command, self.path, dict(self.headers)))
                target = proxy.routes.get(urlsplit(self.path).netloc)
                if target is None:  # not absolute-form, CONNECT, or an address of no route
                    self._answer(502, {}, b"no route")
                    return
                parts = urlsplit(self.path)
                upstream = http.client.HTTPConnection(*target, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    path = parts.path + (f"?{parts.query}" if parts.query else "")
                    upstream.request(self.command, path, body=self._body(), headers=headers)
                    answer = upstream.getresponse()
                    body = answer.read()
                    kept = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}
                    self._answer(answer.status, kept, body)
                finally:
                    upstream.close()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_CONNECT = _forward

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
