"""An HTTP endpoint for Prometheus and orchestrators: ``GET /metrics`` serves servers'
statistics in the text exposition format (``prometheus_text``).

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
    """Answers ``GET /metrics`` (HTTP/1.0 and 1.1, one request per connection)."""

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
        if parts[1].split(b"?", 1)[0] != b"/metrics":
            return self._reply(404, "text/plain", b"see /metrics\n")
        body = self.server.source().encode("utf-8")
        self._reply(200, CONTENT_TYPE, body if parts[0] == b"GET" else b"", len(body))

    def _reply(self, status, content_type, body, length=None):
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        head = ("HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (status, reason, content_type,
                                               len(body) if length is None else length))
        self.wfile.write(head.encode("ascii") + body)


class MetricsServer(ThreadingMixIn, TCPServer):
    """An HTTP endpoint for Prometheus: ``GET /metrics`` answers ``source()``, a function
    returning the exposition text (``prometheus_text``)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, server_address, source, bind_and_activate=True):
        self.source = source
        super().__init__(server_address, _MetricsHandler, bind_and_activate)
