# Types of the public interface: the stdlib's socketserver names, plus IMPLEMENTATION and install().
import sys
from typing import Literal

from ._version import __version__ as __version__
from .activation import listen_fds as listen_fds
from .proxyprotocol import ProxyHeader as ProxyHeader, ProxyProtocolError as ProxyProtocolError
from .prometheus import prometheus_text as prometheus_text
from .relaying import relay as relay
from .greenlets import (
    GreenletMixIn as GreenletMixIn,
    GreenletTCPServer as GreenletTCPServer,
    GreenletUDPServer as GreenletUDPServer,
    Task as Task,
    connect as connect,
    sleep as sleep,
    spawn as spawn,
    to_thread as to_thread,
)
from .handlers import (
    BaseRequestHandler as BaseRequestHandler,
    DatagramRequestHandler as DatagramRequestHandler,
    StreamRequestHandler as StreamRequestHandler,
)
from .mixins import ThreadingMixIn as ThreadingMixIn, ThreadPoolMixIn as ThreadPoolMixIn
from .servers import BaseServer as BaseServer, TCPServer as TCPServer, UDPServer as UDPServer

__all__ = [
    "BaseServer", "TCPServer", "UDPServer",
    "ThreadingUDPServer", "ThreadingTCPServer",
    "BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler",
    "ThreadingMixIn",
    "ThreadPoolMixIn", "ThreadPoolTCPServer", "ThreadPoolUDPServer",
    "GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "connect", "sleep", "spawn",
    "Task", "to_thread", "listen_fds", "prometheus_text", "ProxyHeader", "ProxyProtocolError",
    "relay",
]

# Which engine runs: "compiled", or "python" when the compiled modules can't be imported
# or CYSOCKETSERVER_NO_EXTENSIONS=1 is set.
IMPLEMENTATION: Literal["compiled", "python"]

from .mixins import (
    ThreadingTCPServer as ThreadingTCPServer,
    ThreadingUDPServer as ThreadingUDPServer,
    ThreadPoolTCPServer as ThreadPoolTCPServer,
    ThreadPoolUDPServer as ThreadPoolUDPServer,
)

if sys.platform != "win32":
    from .greenlets import (
        GreenletUnixDatagramServer as GreenletUnixDatagramServer,
        GreenletUnixStreamServer as GreenletUnixStreamServer,
    )
    from .mixins import (
        ForkingMixIn as ForkingMixIn,
        ForkingTCPServer as ForkingTCPServer,
        ForkingUDPServer as ForkingUDPServer,
        ForkingUnixDatagramServer as ForkingUnixDatagramServer,
        ForkingUnixStreamServer as ForkingUnixStreamServer,
        ThreadingUnixDatagramServer as ThreadingUnixDatagramServer,
        ThreadingUnixStreamServer as ThreadingUnixStreamServer,
        ThreadPoolUnixDatagramServer as ThreadPoolUnixDatagramServer,
        ThreadPoolUnixStreamServer as ThreadPoolUnixStreamServer,
    )
    from .servers import UnixDatagramServer as UnixDatagramServer, UnixStreamServer as UnixStreamServer

    __all__ += [
        "ForkingUDPServer", "ForkingTCPServer", "ForkingMixIn",
        "UnixStreamServer", "UnixDatagramServer",
        "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer",
        "ThreadPoolUnixStreamServer", "ThreadPoolUnixDatagramServer",
        "ForkingUnixStreamServer", "ForkingUnixDatagramServer",
        "GreenletUnixStreamServer", "GreenletUnixDatagramServer",
    ]

def install() -> None:
    """Make ``import socketserver`` give this package from now on."""
