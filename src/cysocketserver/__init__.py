"""The standard library's socketserver, compiled.

Use it as ``import cysocketserver as socketserver``, or call ``cysocketserver.install()``
before importing modules that build on socketserver (http.server, xmlrpc.server,
wsgiref.simple_server, logging.config) so that their servers run on this package.

This module is the package's front: it names the public classes and functions and imports
nothing that a program does not use -- the concurrency mix-ins, the greenlet servers (and the
greenlet package), the metrics, the relay and the PROXY protocol's types load when a program
first names them.
"""
import os
import socket
import sys

from ._engine import IMPLEMENTATION
from .handlers import BaseRequestHandler, DatagramRequestHandler, StreamRequestHandler
from .servers import BaseServer, TCPServer, UDPServer

__all__ = [
    "BaseServer", "TCPServer", "UDPServer",
    "BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler",
    "listen_fds", "prometheus_text", "ProxyHeader", "ProxyProtocolError", "relay",
]

if hasattr(socket, "AF_UNIX"):
    from .servers import UnixDatagramServer, UnixStreamServer

    __all__ += ["UnixStreamServer", "UnixDatagramServer"]

# The concurrency mix-ins and the ready-made servers built with them (mixins.py), loaded with
# their models when a program first names one: a program that serves one way does not pay for
# the others.
_MIXIN_NAMES = ["ThreadingMixIn", "ThreadingTCPServer", "ThreadingUDPServer",
                "ThreadPoolMixIn", "ThreadPoolTCPServer", "ThreadPoolUDPServer"]
if hasattr(os, "fork"):
    _MIXIN_NAMES += ["ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer"]
if hasattr(socket, "AF_UNIX"):
    _MIXIN_NAMES += ["ThreadingUnixStreamServer", "ThreadingUnixDatagramServer",
                     "ThreadPoolUnixStreamServer", "ThreadPoolUnixDatagramServer"]
    if hasattr(os, "fork"):
        _MIXIN_NAMES += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]
__all__ += _MIXIN_NAMES


# Names loaded on first use: name -> the module that defines it.
_LAZY = {"__version__": "._version",
         "prometheus_text": ".prometheus", "listen_fds": ".activation",
         "ProxyHeader": ".proxyprotocol", "ProxyProtocolError": ".proxyprotocol",
         "relay": ".relaying"}
_LAZY.update(dict.fromkeys(_MIXIN_NAMES, ".mixins"))
# The greenlet servers: a greenlet per request on one OS thread.  greenlet is a dependency;
# where it is missing, the rest of the package works and these names say how to get it.
_GREENLET_NAMES = ["GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "connect", "sleep",
                   "spawn", "Task", "to_thread"]
if hasattr(socket, "AF_UNIX"):
    _GREENLET_NAMES += ["GreenletUnixStreamServer", "GreenletUnixDatagramServer"]
_LAZY.update(dict.fromkeys(_GREENLET_NAMES, ".greenlets"))
__all__ += _GREENLET_NAMES


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = __import__(__name__ + module_name, fromlist=[name])
    except ImportError as exc:
        if exc.name != "greenlet":
            raise
        raise ImportError(
            f"cysocketserver.{name} needs the greenlet package, which could not be imported "
            f"({exc}); install it with: pip install 'greenlet>=3'", name="greenlet") from None
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


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
            import warnings

            warnings.warn(
                "cysocketserver.install() came after %s was imported; servers from %s keep "
                "the stdlib's socketserver classes" % (", ".join(early), "them" if len(early) > 1 else "it"),
                RuntimeWarning, stacklevel=2)
    sys.modules["socketserver"] = this


# Stdlib modules that take socketserver's classes when they are imported.
_DEPENDENTS = ("http.server", "xmlrpc.server", "wsgiref.simple_server", "logging.config")
