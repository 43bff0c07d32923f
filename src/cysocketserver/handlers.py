"""Request handlers: one instance per request, running setup(), handle(), finish()."""
import socket
from io import BytesIO

from . import _engine

__all__ = ["BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler"]


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
        engine = _engine.current()
        # The connection's byte meter, on this package's servers (stats()).
        meter_for = getattr(self.server, "_meter_for", None)
        meter = None if meter_for is None else meter_for(conn)
        if self.rbufsize == 0:
            self.rfile = conn.makefile("rb", 0)
        else:
            self.rfile = engine.SocketReader(conn, self.rbufsize, meter)
        if self.wbufsize == 0:
            self.wfile = engine.SocketWriter(conn, meter)
        else:
            self.wfile = conn.makefile("wb", self.wbufsize)

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
