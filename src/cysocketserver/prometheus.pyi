# Prometheus text exposition of servers' stats().
from collections.abc import Mapping

from .servers import BaseServer

__all__ = ["prometheus_text", "CONTENT_TYPE"]

CONTENT_TYPE: str

def prometheus_text(servers: BaseServer | Mapping[str, BaseServer]) -> str: ...
