"""The unbuffered ``wfile`` that writes through the request's own sendall(), as the stdlib's
does.  Engine layer, plain Python: the pure engine's SocketWriter, and the fallback writer the
handlers use on either engine for requests the engine's streams cannot drive."""
import io

__all__ = ["SendallWriter", "counted_here"]


def counted_here(sock, meter):
    """Whether a stream over ``sock`` must count into ``meter`` itself: not where the socket
    counts its own bytes into the same meter (the greenlet servers' cooperative socket)."""
    return meter is not None and getattr(sock, "_meter", None) is not meter


class SendallWriter(io.BufferedIOBase):
    """The handler's unbuffered ``wfile``: the stdlib's ``socketserver._SocketWriter``.

    The pure engine's writer, and on either engine the writer of every request the engine's
    streams do not stand in for (see handlers.py): only sendall() is asked of the request.

    ``write()`` hands the whole buffer to ``sendall`` (so nothing is ever
    written partially) and returns its length in bytes.  Closing this object
    leaves the socket open; ``fileno()`` is the socket's.
    """

    def __init__(self, sock, meter=None):
        self._sock = sock
        self._meter = meter if counted_here(sock, meter) else None

    def write(self, b):
        # sendall first, so a non-buffer argument fails with its message.
        self._sock.sendall(b)
        with memoryview(b) as view:
            if self._meter is not None:
                self._meter.sent += view.nbytes
            return view.nbytes

    def writable(self):
        return True

    def fileno(self):
        return self._sock.fileno()
