"""The rfile/wfile streams of StreamRequestHandler in pure Python.

The same two names as the compiled ``cysocketserver._streams``, for platforms
without the extension (or with ``CYSOCKETSERVER_NO_EXTENSIONS=1``).
"""
import io

__all__ = ["SocketReader", "SocketWriter"]


def SocketReader(sock, buffer_size=-1):
    """The handler's ``rfile``: exactly what the standard library uses."""
    return sock.makefile("rb", buffer_size)


class SocketWriter(io.BufferedIOBase):
    """The handler's unbuffered ``wfile``: the stdlib's ``socketserver._SocketWriter``.

    On the compiled engine too it is the writer of every request the compiled streams do
    not stand in for (see handlers.py): only sendall() is asked of the request.

    ``write()`` hands the whole buffer to ``sendall`` (so nothing is ever
    written partially) and returns its length in bytes.  Closing this object
    leaves the socket open; ``fileno()`` is the socket's.
    """

    def __init__(self, sock):
        self._sock = sock

    def write(self, b):
        # sendall first, so a non-buffer argument fails with its message.
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes

    def writable(self):
        return True

    def fileno(self):
        return self._sock.fileno()
