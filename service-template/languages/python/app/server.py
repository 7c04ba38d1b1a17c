"""The service's HTTP API: health and readiness for the probes of deploy/base/rollout.yaml, and one
greeting endpoint whose wording a feature flag switches."""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from app import flags
from app.metrics import UNCOUNTED, Registry

# The service's name: its metrics' service label (the canary analysis selects by it).
NAME = "example-service"


def greeting(name: str, formal: bool) -> str:
    return f"good day, {name}" if formal else f"hello, {name}"


def make_handler(flags_url: str, metrics: Registry):
    class Handler(BaseHTTPRequestHandler):
        # Slow clients are cut off (hostile input).
        timeout = 10

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._start = time.monotonic()
            url = urlparse(self.path)
            self._counted = url.path not in UNCOUNTED
            if url.path == "/metrics":
                self._answer(200, metrics.text().encode(), "text/plain; version=0.0.4")
            elif url.path in ("/healthz", "/readyz"):
                self._answer(200, b"ok", "text/plain")
            elif url.path == "/hello":
                name = parse_qs(url.query).get("name", ["world"])[0]
                formal = flags.enabled(flags_url, "formal-greeting")
                body = json.dumps({"greeting": greeting(name, formal), "formal-greeting": formal})
                self._answer(200, body.encode(), "application/json")
            else:
                self._answer(404, b"not found", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            # Counted before the answer is sent: a client that reads /metrics right after its
            # answer must find its request there.
            if self._counted:
                metrics.observe(status, time.monotonic() - self._start)
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


def serve(port: int, flags_url: str) -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("", port), make_handler(flags_url, Registry(NAME)))


def main() -> None:
    serve(int(os.environ.get("PORT", "8080")), os.environ.get("FLAGS_URL", "")).serve_forever()
