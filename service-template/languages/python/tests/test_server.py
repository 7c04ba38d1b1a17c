import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app import flags
from app.server import greeting, serve


def start(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def sidecar():
    answers = {
        "formal-greeting": b'{"name":"formal-greeting","enabled":true}',
        "off": b'{"enabled":false}',
        "garbled": b"{",
    }

    class Flags(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = answers.get(self.path.removeprefix("/v1/flags/"))
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flags)
    yield start(server)
    server.shutdown()


def get(url):
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read()


def test_greeting():
    assert greeting("ops", False) == "hello, ops"
    assert greeting("ops", True) == "good day, ops"


def test_probes_and_hello_without_flags():
    server = serve(0, "")
    base = start(server)
    try:
        assert get(f"{base}/healthz")[0] == 200
        assert get(f"{base}/readyz")[0] == 200
        assert json.loads(get(f"{base}/hello?name=ops")[1])["greeting"] == "hello, ops"
        with pytest.raises(urllib.error.HTTPError):
            get(f"{base}/nope")
    finally:
        server.shutdown()


def test_requests_are_counted_but_probes_are_not():
    server = serve(0, "")
    base = start(server)
    try:
        get(f"{base}/hello")
        get(f"{base}/healthz")
        with pytest.raises(urllib.error.HTTPError):
            get(f"{base}/nope")
        text = get(f"{base}/metrics")[1].decode()
        assert 'http_requests_total{service="example-service",status="200"} 1' in text
        assert 'http_requests_total{service="example-service",status="404"} 1' in text
        assert 'http_request_duration_seconds_count{service="example-service"} 2' in text
    finally:
        server.shutdown()


def test_the_histogram_fills_the_buckets_at_and_above_the_duration():
    from app.metrics import Registry

    r = Registry("s")
    r.observe(200, 0.02)
    assert 'le="0.01"} 0' in r.text() and 'le="0.025"} 1' in r.text()


def test_the_flag_switches_the_greeting(sidecar):
    server = serve(0, sidecar)
    base = start(server)
    try:
        assert json.loads(get(f"{base}/hello")[1])["greeting"] == "good day, world"
    finally:
        server.shutdown()


def test_a_flag_that_cannot_be_read_is_off(sidecar):
    assert flags.enabled(sidecar, "formal-greeting") is True
    assert flags.enabled(sidecar, "off") is False
    assert flags.enabled(sidecar, "garbled") is False
    assert flags.enabled(sidecar, "missing") is False
    assert flags.enabled("", "formal-greeting") is False
    assert flags.enabled("http://127.0.0.1:1", "formal-greeting") is False
