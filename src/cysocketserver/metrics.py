"""An HTTP endpoint for Prometheus and orchestrators: ``GET /metrics`` serves servers'
statistics in the text exposition format (``prometheus_text``); ``GET /healthz`` answers 200
while the process serves (a liveness probe), ``GET /readyz`` 200 while ``ready()`` says so,
else 503 (a readiness probe).

    from cysocketserver.metrics import prometheus_text, MetricsServer

    text = prometheus_text(server)                  # or {"echo": server, "admin": other}
    metrics = MetricsServer(("127.0.0.1", 9100), lambda: prometheus_text(server))
    threading.Thread(target=metrics.serve_forever, daemon=True).start()
"""
from .handlers import StreamRequestHandler
from .mixins import ThreadingMixIn
from .prometheus import CONTENT_TYPE, prometheus_text
from .servers import TCPServer

__all__ = ["prometheus_text", "MetricsServer", "CONTENT_TYPE"]


class _MetricsHandler(StreamRequestHandler):
    """Answers ``GET /metrics``, ``/healthz`` and ``/readyz`` (HTTP/1.0 and 1.1, one request
    per connection)."""

    timeout = 10

    def handle(self):
        request_line = self.rfile.readline(8192)
        while True:   # the headers: not needed
            header = self.rfile.readline(8192)
            if header in (b"\r\n", b"\n", b""):
                break
        parts = request_line.split()
        if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
            return self._reply(405, "text/plain", b"only GET\n")
        path = parts[1].split(b"?", 1)[0]
        if path == b"/healthz":
            status, content_type, body = 200, "text/plain", b"ok\n"
        elif path == b"/readyz":
            ready = self.server.ready()
            status, content_type, body = (200 if ready else 503), "text/plain", (
                b"ready\n" if ready else b"not ready\n")
        elif path == b"/metrics":
            status, content_type = 200, CONTENT_TYPE
            body = self.server.source().encode("utf-8")
        else:
            return self._reply(404, "text/plain", b"see /metrics, /healthz, /readyz\n")
        self._reply(status, content_type, body if parts[0] == b"GET" else b"", len(body))

    def _reply(self, status, content_type, body, length=None):
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}[status]
        head = ("HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (status, reason, content_type,
                                               len(body) if length is None else length))
        self.wfile.write(head.encode("ascii") + body)


def _always():
    return True


class MetricsServer(ThreadingMixIn, TCPServer):
    """An HTTP endpoint for Prometheus: ``GET /metrics`` answers ``source()``, a function
    returning the exposition text (``prometheus_text``); ``GET /readyz`` answers 200 while
    ``ready()`` is true, else 503 (default: always ready while it serves); ``GET /healthz``
    answers 200."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, server_address, source, bind_and_activate=True, ready=None):
        self.source = source
        self.ready = ready if ready is not None else _always
        super().__init__(server_address, _MetricsHandler, bind_and_activate)
