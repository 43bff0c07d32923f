# Prometheus text exposition of servers' stats().
from collections.abc import Callable, Mapping

from .mixins import ThreadingMixIn
from .servers import BaseServer, TCPServer, _InetAddress

__all__ = ["prometheus_text", "MetricsServer", "CONTENT_TYPE"]

CONTENT_TYPE: str

def prometheus_text(servers: BaseServer | Mapping[str, BaseServer]) -> str: ...

class MetricsServer(ThreadingMixIn, TCPServer):
    """An HTTP endpoint for Prometheus: GET /metrics answers source()."""
    source: Callable[[], str]
    def __init__(
        self, server_address: _InetAddress, source: Callable[[], str], bind_and_activate: bool = True
    ) -> None: ...
