"""The rfile/wfile streams of StreamRequestHandler in pure Python.

The same names as the compiled ``cysocketserver._streams``, for platforms without the
extension (or with ``CYSOCKETSERVER_NO_EXTENSIONS=1``).  Given a ``meter``, the streams count
the bytes they move, as the compiled ones do; a socket that counts its own bytes into the same
meter (the greenlet servers' cooperative socket) is left to count them.
"""
import io
import socket

__all__ = ["SocketReader", "SocketWriter"]


def _counted_here(sock, meter):
    return meter is not None and getattr(sock, "_meter", None) is not meter


class _MeteredSocketIO(socket.SocketIO):
    """socket.SocketIO that adds what it receives to a meter."""

    def __init__(self, sock, mode, meter):
        super().__init__(sock, mode)
        self._meter = meter

    def readinto(self, b):
        got = super().readinto(b)
        if got:
            self._meter.received += got
        return got


def SocketReader(sock, buffer_size=-1, meter=None):
    """The handler's ``rfile``: exactly what the standard library uses,
    ``sock.makefile('rb', buffer_size)``, counting into ``meter`` when given one."""
    if not _counted_here(sock, meter):
        return sock.makefile("rb", buffer_size)
    raw = _MeteredSocketIO(sock, "rb", meter)
    # What makefile() does: the socket stays open until the file is closed.
    sock._io_refs += 1
    if buffer_size is None or buffer_size < 0:
        buffer_size = io.DEFAULT_BUFFER_SIZE
    if buffer_size == 0:
        return raw
    return io.BufferedReader(raw, buffer_size)


class SocketWriter(io.BufferedIOBase):
    """The handler's unbuffered ``wfile``: the stdlib's ``socketserver._SocketWriter``.

    On the compiled engine too it is the writer of every request the compiled streams do
    not stand in for (see handlers.py): only sendall() is asked of the request.

    ``write()`` hands the whole buffer to ``sendall`` (so nothing is ever
    written partially) and returns its length in bytes.  Closing this object
    leaves the socket open; ``fileno()`` is the socket's.
    """

    def __init__(self, sock, meter=None):
        self._sock = sock
        self._meter = meter if _counted_here(sock, meter) else None

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
