"""TCP_NODELAY on accepted connections: the policy behind ``TCPServer.tcp_nodelay``.

Every path that accepts TCP connections (``TCPServer.get_request``, and the engines' accept
batches through ``Plan.nodelay``) asks ``wants_nodelay(server)`` and, when it says yes, sets the
option on each connection before its handler sees it.

Why on by default: a handler that answers with two small writes (http.server sends the headers,
then the body) has its second write held back by Nagle's algorithm until the client
acknowledges the first, and a client that waits for the whole answer acknowledges late (its
delayed ACK, about 40 ms on Linux): every such request takes 40 ms.  With TCP_NODELAY each write
leaves when it is made.  Nothing is delayed, reordered or lost by it; what changes is that small
writes are no longer merged into fewer segments.  asyncio does the same for its TCP transports.
"""
import socket

from .._loopcommon import set_nodelay

__all__ = ["wants_nodelay", "set_nodelay"]

_TCP_FAMILIES = frozenset(
    family for family in (getattr(socket, "AF_INET", None), getattr(socket, "AF_INET6", None))
    if family is not None)
_HAVE_NODELAY = hasattr(socket, "TCP_NODELAY")


def wants_nodelay(server):
    """Whether the connections that server accepts get TCP_NODELAY (a TCP listener whose
    ``tcp_nodelay`` is true); false for Unix-domain and datagram servers."""
    if not _HAVE_NODELAY or not getattr(server, "tcp_nodelay", None):
        return False
    listener = getattr(server, "socket", None)
    return (listener is not None and listener.type == socket.SOCK_STREAM
            and listener.family in _TCP_FAMILIES)
