"""A throttling proxy in front of moto's S3 server (tests/servers.py): moto never throttles,
Amazon S3 does (``503 SlowDown``). It listens on 127.0.0.1 only, in threads of the test process,
and stops by itself after :data:`servers.SERVER_SECONDS`.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Callable
from typing import Any

from servers import SERVER_SECONDS

#: What Amazon S3 answers a client that sends too many requests (503 SlowDown).
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please '
             b"reduce your request rate.</Message><RequestId>AUDTOOLSTEST</RequestId></Error>")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authenticate", "proxy-authorization"}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers one connection's requests for :class:`ThrottlingProxy` (``server.proxy``)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, reason: str, headers: list[tuple[str, str]],
                body: bytes) -> None:
        self.send_response(status, reason)
        head = self.command == "HEAD"  # its Content-Length is the object's size
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and (head or name.lower() != "content-length"):
                self.send_header(name, value)
        if not head:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        proxy: ThrottlingProxy = self.server.proxy  # type: ignore[attr-defined]
        if proxy.refuse(self.command, self.path):
            self._answer(503, "Slow Down", [("Content-Type", "application/xml"),
                         ("Content-Length", str(len(SLOW_DOWN)))], SLOW_DOWN)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self._answer(answer.status, answer.reason, answer.getheaders(), data)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815


class ThrottlingProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 server that answers S3's ``503 SlowDown``
    to the first :attr:`throttle` requests that :attr:`rule` matches (all of them while
    ``throttle`` is None), and forwards the others unchanged. Threaded; it stops by itself after
    :data:`SERVER_SECONDS`.

    Args:
        upstream: the S3 server's port on 127.0.0.1.
        throttle: requests to refuse before forwarding (None: refuse every request).
        rule: which requests may be refused, from their method and path (None: every one).

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT``, the endpoint audtools is given.
        throttled: requests answered with SlowDown so far.
        forwarded: requests passed to the S3 server so far.
    """

    def __init__(self, upstream: int, throttle: int | None = 0,
                 rule: Callable[[str, str], bool] | None = None) -> None:
        self.upstream = upstream
        self.throttle = throttle
        self.rule = rule
        self.throttled = 0
        self.forwarded = 0
        self._lock = threading.Lock()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.proxy = self  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._timer = threading.Timer(SERVER_SECONDS, self.stop)
        self._timer.daemon = True

    def refuse(self, method: str, path: str) -> bool:
        """Whether this request is answered with SlowDown (and count it)."""
        with self._lock:
            matches = self.rule is None or self.rule(method, path)
            if matches and (self.throttle is None or self.throttled < self.throttle):
                self.throttled += 1
                return True
            self.forwarded += 1
            return False

    def set_throttle(self, throttle: int | None,
                     rule: Callable[[str, str], bool] | None = None) -> None:
        """Refuse the next ``throttle`` requests ``rule`` matches (None: every one from now on)."""
        with self._lock:
            self.throttle = None if throttle is None else self.throttled + throttle
            self.rule = rule

    def start(self) -> None:
        """Start serving (in threads of the test process)."""
        self._thread.start()
        self._timer.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ThrottlingProxy:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
