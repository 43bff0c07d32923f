"""Request handlers: one instance per request, running setup(), handle(), finish()."""
import socket
from io import BytesIO

from . import _engine

__all__ = ["BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler"]

# The engine's rfile/wfile read and write a socket's descriptor themselves instead of calling
# its methods.  That gives the stdlib's results only where the methods they stand in for are
# the ones of a socket class they were written for: makefile() (which setup() would call),
# recv_into() (what the stdlib's reader calls), sendall() (what the stdlib's writer calls),
# fileno() and gettimeout() (which they call where the socket's C code reads its descriptor
# and timeout directly), _cysocketserver_wait (how they park on a cooperative socket), and
# __getattribute__ (which could reroute any of these).  recv(), send() and settimeout() are
# not in the list: the stdlib's file objects never call the first two, and the timeout set
# through the third is read back through gettimeout().
_STANDS_IN_FOR = frozenset([
    "makefile", "recv_into", "sendall", "fileno", "gettimeout", "_cysocketserver_wait",
    "__getattribute__",
])
# The socket classes the engine's streams were written for; green/servers.py adds GreenSocket.
_stream_socket_classes = {socket.socket}
# Verdicts of _engine_streams_fit() on other classes (subclasses, wrappers, mocks), weakly
# keyed; made when the first such class is seen.
_class_fits = None


def _register_stream_socket(cls):
    """Class decorator: the engine's streams may drive sockets of ``cls`` (a class of ours)."""
    _stream_socket_classes.add(cls)
    if _class_fits is not None:
        _class_fits.clear()
    return cls


def _fits(cls):
    # The nearest class of ours in the MRO, and nothing of it overridden.
    for base in cls.__mro__:
        if base in _stream_socket_classes:
            return all(getattr(cls, name, None) is getattr(base, name, None) for name in _STANDS_IN_FOR)
    return False


def _engine_streams_fit(conn):
    """Whether the engine's rfile/wfile over ``conn`` cannot be told from the stdlib's files.

    True for a socket.socket, a GreenSocket, and a subclass of either that overrides none of
    _STANDS_IN_FOR, on its class or on the instance.  Anything else (an ssl.SSLSocket, a
    wrapper, a mock) gets exactly the stdlib's calls.
    """
    cls = type(conn)
    if cls is socket.socket:
        return True  # no __dict__: nothing can be overridden on the instance
    global _class_fits
    if _class_fits is None:
        import weakref

        _class_fits = weakref.WeakKeyDictionary()
    fits = _class_fits.get(cls)
    if fits is None:
        fits = _class_fits[cls] = _fits(cls)
    if fits:
        overrides = getattr(conn, "__dict__", None)
        if overrides:
            fits = _STANDS_IN_FOR.isdisjoint(overrides)
    return fits


class BaseRequestHandler:
    """Handles one request; subclasses override handle() and maybe setup()/finish().

    An instance is made per request, with ``self.request`` (the connected socket, or
    ``(data, socket)`` for a datagram), ``self.client_address`` and ``self.server``; making it
    runs setup(), handle() and finish() (finish() even when handle() raised).
    """

    def __init__(self, request, client_address, server):
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self):
        """Called before handle(); does nothing by default."""

    def handle(self):
        """Serve the request; does nothing by default."""

    def finish(self):
        """Called after handle(), even when it raised; does nothing by default."""


class StreamRequestHandler(BaseRequestHandler):
    """Gives handle() file objects over a stream socket: rfile to read, wfile to write.

    ``rbufsize`` (-1: buffered; 0: unbuffered), ``wbufsize`` (0: every write() is sent at once),
    ``timeout`` (seconds, per socket call), ``disable_nagle_algorithm`` (TCP_NODELAY), as in
    the stdlib.  On this package's servers, the bytes rfile and wfile move are counted in the
    server's ``stats()``.
    """

    # -1: buffered with the default size; 0: unbuffered (a raw socket file, as in the stdlib).
    rbufsize = -1
    # 0: every write() goes straight out; otherwise a buffered writer flushed by finish().
    wbufsize = 0
    timeout = None
    disable_nagle_algorithm = False

    def setup(self):
        """Set the socket's timeout and Nagle option, and make rfile and wfile."""
        self.connection = conn = self.request
        if self.timeout is not None:
            conn.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        # The engine's streams only where they cannot be told from what the stdlib asks the
        # request for; any other request (a mock, an SSL socket, a wrapper) gets those calls.
        fast = _engine_streams_fit(conn)
        engine = _engine.current()
        # The connection's byte meter, on this package's servers (stats()); looked up on the
        # class, so that a stand-in server (a Mock, in CPython's own tests) offers none.
        meter_for = getattr(type(self.server), "_meter_for", None)
        meter = None if meter_for is None else meter_for(self.server, conn)
        if self.rbufsize == 0 or not fast:
            self.rfile = conn.makefile("rb", self.rbufsize)
        else:
            self.rfile = engine.SocketReader(conn, self.rbufsize, meter)
        if self.wbufsize != 0:
            self.wfile = conn.makefile("wb", self.wbufsize)
        elif fast:
            self.wfile = engine.SocketWriter(conn, meter)
        else:
            from ._sendallwriter import SendallWriter  # requests the engine cannot drive

            self.wfile = SendallWriter(conn, meter)

    def finish(self):
        """Flush wfile (a client that has gone is ignored), then close both files."""
        if not self.wfile.closed:
            try:
                self.wfile.flush()
            except OSError:
                # The client may be gone already; nothing left to tell it.
                pass
        self.wfile.close()
        self.rfile.close()


class DatagramRequestHandler(BaseRequestHandler):
    """Gives handle() the packet as rfile and sends what it writes to wfile as the reply."""

    def setup(self):
        """rfile reads the datagram; wfile collects the reply."""
        self.packet, self.socket = self.request
        self.rfile = BytesIO(self.packet)
        self.wfile = BytesIO()

    def finish(self):
        """Send what handle() wrote to wfile back to the client, as one datagram."""
        self.socket.sendto(self.wfile.getvalue(), self.client_address)
