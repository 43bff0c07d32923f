"""The standard library's socketserver, compiled.

Use it as ``import cysocketserver as socketserver``, or call ``cysocketserver.install()``
before importing modules that build on socketserver (http.server, xmlrpc.server,
wsgiref.simple_server, logging.config) so that their servers run on this package.
"""
import os
import sys
import warnings

from ._engine import IMPLEMENTATION
from ._version import __version__
from .activation import listen_fds
from .handlers import BaseRequestHandler, DatagramRequestHandler, StreamRequestHandler
from .mixins import ThreadingMixIn, ThreadPoolMixIn
from .servers import BaseServer, TCPServer, UDPServer
from .metrics import prometheus_text

__all__ = [
    "BaseServer", "TCPServer", "UDPServer",
    "ThreadingUDPServer", "ThreadingTCPServer",
    "BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler",
    "ThreadingMixIn",
    "ThreadPoolMixIn", "ThreadPoolTCPServer", "ThreadPoolUDPServer",
    "listen_fds", "prometheus_text",
]


class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    """UDPServer that handles each datagram in a new thread."""


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    """TCPServer that handles each connection in a new thread."""


class ThreadPoolUDPServer(ThreadPoolMixIn, UDPServer):
    """UDPServer whose requests run on a bounded pool of reusable threads."""


class ThreadPoolTCPServer(ThreadPoolMixIn, TCPServer):
    """TCPServer whose connections run on a bounded pool of reusable threads."""


if hasattr(os, "fork"):
    from .mixins import ForkingMixIn

    class ForkingUDPServer(ForkingMixIn, UDPServer):
        """UDPServer that handles each datagram in a child process."""

    class ForkingTCPServer(ForkingMixIn, TCPServer):
        """TCPServer that handles each connection in a child process."""

    __all__ += ["ForkingUDPServer", "ForkingTCPServer", "ForkingMixIn"]

if hasattr(__import__("socket"), "AF_UNIX"):
    from .servers import UnixDatagramServer, UnixStreamServer

    class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
        """UnixStreamServer that handles each connection in a new thread."""

    class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
        """UnixDatagramServer that handles each datagram in a new thread."""

    class ThreadPoolUnixStreamServer(ThreadPoolMixIn, UnixStreamServer):
        """UnixStreamServer whose connections run on a bounded pool of reusable threads."""

    class ThreadPoolUnixDatagramServer(ThreadPoolMixIn, UnixDatagramServer):
        """UnixDatagramServer whose requests run on a bounded pool of reusable threads."""

    __all__ += ["UnixStreamServer", "UnixDatagramServer",
                "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer",
                "ThreadPoolUnixStreamServer", "ThreadPoolUnixDatagramServer"]

    if hasattr(os, "fork"):

        class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
            """UnixStreamServer that handles each connection in a child process."""

        class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
            """UnixDatagramServer that handles each datagram in a child process."""

        __all__ += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]


# Greenlet servers: a greenlet per request on one OS thread. greenlet is a dependency; where it
# is missing, the rest of the package works and these names say how to get it.
_GREENLET_NAMES = ["GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "connect", "sleep",
                   "to_thread"]
if hasattr(__import__("socket"), "AF_UNIX"):
    _GREENLET_NAMES += ["GreenletUnixStreamServer", "GreenletUnixDatagramServer"]
try:
    from . import greenlets as _greenlets
except ImportError as _exc:
    if _exc.name != "greenlet":
        raise
    _GREENLET_ERROR = str(_exc)

    def __getattr__(name):
        if name in _GREENLET_NAMES:
            raise ImportError(
                f"cysocketserver.{name} needs the greenlet package, which could not be imported "
                f"({_GREENLET_ERROR}); install it with: pip install 'greenlet>=3'",
                name="greenlet")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
else:
    from .greenlets import GreenletMixIn, GreenletTCPServer, GreenletUDPServer, connect, sleep, to_thread

    if hasattr(__import__("socket"), "AF_UNIX"):
        from .greenlets import GreenletUnixDatagramServer, GreenletUnixStreamServer
    __all__ += _GREENLET_NAMES


def install():
    """Make ``import socketserver`` give this package from now on.

    Only modules imported afterwards are affected: a module that already imported the stdlib's
    socketserver (or http.server, which subclasses its TCPServer at import) keeps the classes
    it has.  Calling install() again does nothing more.
    """
    this = sys.modules[__name__]
    previous = sys.modules.get("socketserver")
    if previous is this:
        return
    if previous is not None:
        early = [name for name in _DEPENDENTS if name in sys.modules]
        if early:
            warnings.warn(
                "cysocketserver.install() came after %s was imported; servers from %s keep "
                "the stdlib's socketserver classes" % (", ".join(early), "them" if len(early) > 1 else "it"),
                RuntimeWarning, stacklevel=2)
    sys.modules["socketserver"] = this


# Stdlib modules that take socketserver's classes when they are imported.
_DEPENDENTS = ("http.server", "xmlrpc.server", "wsgiref.simple_server", "logging.config")
