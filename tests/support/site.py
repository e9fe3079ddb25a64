"""A local website for browser tests: plain pages, redirects, a form, slow and hanging pages.

It runs in a thread on 127.0.0.1 (tests allow that address with CHASER_BROWSER_ALLOW) and
records what it saw, e.g. when a hanging request's connection was closed by the other end.
"""

from __future__ import annotations

import contextlib
import html
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PAGE = """<!doctype html><html><head><title>Fixture page</title>
<link rel="icon" href="data:,"></head><body>
<h1 id="headline" class="big title">Hello, fixtures</h1>
<ul><li class="item" data-n="1">one</li><li class="item" data-n="2">two</li>
<li class="item" data-n="3">three</li></ul>
<a id="next" href="/final" data-kind="link">next page</a>
<p>Some body text.</p></body></html>"""

FORM = """<!doctype html><html><head><title>Form</title><link rel="icon" href="data:,"></head>
<body><form method="post" action="/greet"><input id="name" name="name">
<button id="go" type="submit">Go</button></form></body></html>"""

LATE = """<!doctype html><html><head><title>Late</title><link rel="icon" href="data:,"></head>
<body><script>setTimeout(() => { const p = document.createElement('p');
p.id = 'late'; p.textContent = 'arrived'; document.body.appendChild(p); }, 300);</script>
</body></html>"""

SUBRESOURCE = """<!doctype html><html><head><title>Pixels</title><link rel="icon" href="data:,">
</head><body><h1>with a pixel</h1><img src="http://169.254.169.254/latest/meta-data/x.png">
</body></html>"""


class Site:
    """The fixture website."""

    def __init__(self) -> None:
        self.hang_closed: list[float] = []
        self.requests: list[str] = []
        handler = type("SiteHandler", (_Handler,), {"site": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        port: int = self._server.server_address[1]
        return port

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """An absolute URL of a path on this site."""
        return f"http://{host}:{self.port}{path}"

    def start(self) -> Site:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


STATIC = {
    "/": (200, PAGE),
    "/final": (200, "<html><head><title>Final</title></head><body><h1>final</h1></body></html>"),
    "/form": (200, FORM),
    "/late": (200, LATE),
    "/pixel": (200, SUBRESOURCE),
    "/missing": (404, "<html><head><title>Gone</title></head></html>"),
    "/alert": (
        200,
        "<html><head><title>before</title></head><body><script>"
        "alert('hi'); document.title = confirm('sure?') ? 'yes' : 'dismissed';"
        "</script></body></html>",
    ),
}
REDIRECTS = {"/chain": "/redirect?to=/final", "/to-private": "http://10.255.255.1/secret"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    site: Site

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.site.requests.append(self.path)
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path in STATIC:
            self._send(*STATIC[parts.path])
        elif parts.path in REDIRECTS or parts.path == "/redirect":
            target = REDIRECTS.get(parts.path) or query.get("to", "/final")
            self._send(302, "", {"Location": target})
        elif parts.path == "/hang":
            self._hang()
        elif parts.path == "/slow":
            time.sleep(int(query.get("ms", "1000")) / 1000)
            self._send(200, "<html><head><title>Slow</title></head><body><h1>slow</h1></body>")
        else:
            self._send(404, "<html><head><title>Not found</title></head><body>nope</body>")

    def do_POST(self) -> None:
        self.site.requests.append("POST " + self.path)
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        name = html.escape(form.get("name", ["nobody"])[-1])
        page = (
            f"<html><head><title>Greeting</title></head><body><p id='greeting'>Hello, {name}!</p>"
        )
        self._send(200, page + "</body></html>")

    def _hang(self) -> None:
        # Never answer; note when the browser side (the egress proxy) hangs up.
        self.connection.settimeout(120)
        with contextlib.suppress(OSError):
            self.rfile.read(1)
        self.site.hang_closed.append(time.monotonic())
