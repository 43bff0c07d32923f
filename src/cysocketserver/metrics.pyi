# The /metrics endpoint; the text itself is prometheus.py's.
from collections.abc import Callable

from .mixins import ThreadingMixIn
from .prometheus import CONTENT_TYPE as CONTENT_TYPE, prometheus_text as prometheus_text
from .servers import TCPServer, _InetAddress

__all__ = ["prometheus_text", "MetricsServer", "CONTENT_TYPE"]

class MetricsServer(ThreadingMixIn, TCPServer):
    """An HTTP endpoint for Prometheus: GET /metrics answers source(); GET /readyz 200 while
    ready(), else 503; GET /healthz 200."""
    source: Callable[[], str]
    ready: Callable[[], bool]
    def __init__(
        self,
        server_address: _InetAddress,
        source: Callable[[], str],
        bind_and_activate: bool = True,
        ready: Callable[[], bool] | None = None,
    ) -> None: ...
