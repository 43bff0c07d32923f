"""The rfile/wfile streams of StreamRequestHandler in pure Python.

The same names as the compiled ``cysocketserver._streams``, for platforms without the
extension (or with ``CYSOCKETSERVER_NO_EXTENSIONS=1``).  Given a ``meter``, the streams count
the bytes they move, as the compiled ones do; a socket that counts its own bytes into the same
meter (the greenlet servers' cooperative socket) is left to count them.
"""
import io
import socket

from ._sendallwriter import SendallWriter as SocketWriter, counted_here as _counted_here

__all__ = ["SocketReader", "SocketWriter"]


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
