"""Which listening socket each prefork worker accepts on: the balancing modes.

``"shared"`` (the default): every worker accepts on the server's one listener.  Each waits for
it with an exclusive wake-up (EPOLLEXCLUSIVE, where the system has it), so one idle worker
wakes per new connection rather than all of them; a worker busy with a long request is not
waiting, so it is not handed new connections.

``"reuseport"``: one SO_REUSEPORT listener per worker index, all bound to the same address; the
kernel spreads new connections over them by a hash of the client's address and port, evenly
whatever each worker is doing.

Either way the parent holds every listener for the server's life: a worker that is replaced
(crashed, recycled, reloaded) leaves its queued connections to its successor, which serves the
same listener.  Only when a listener is to close for good (the server stops; with "reuseport",
a worker index is removed) are new handshakes stopped first (``refuse_new_connections``) and the
queue emptied by the last worker before the close, so no connection that was queued is reset.
"""
import socket
import struct
import sys

__all__ = ["BALANCING", "Listeners", "check", "refuse_new_connections"]

BALANCING = ("shared", "reuseport")

# A one-instruction classic BPF program, "return 0": the socket takes no packet.  On a listening
# TCP socket that drops new SYNs (the client retries a second later, and by then finds the port
# closed or served by someone else) while connections already queued stay queued.
_BPF_RET_K = 0x06
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)


def refuse_new_connections(sock):
    """Stop ``sock`` (a listener about to close) from completing new handshakes.  True where
    done (Linux); False where the system has no socket filters (the caller then only shortens
    the window in which a connection could arrive)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    program = (ctypes.c_uint8 * 8)()
    struct.pack_into("=HBBI", program, 0, _BPF_RET_K, 0, 0, 0)
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}, native alignment.
    fprog = struct.pack("@HP", 1, ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def _reuseport_capable(server):
    sock = server.socket
    return (hasattr(socket, "SO_REUSEPORT")
            and sock.family in (socket.AF_INET, socket.AF_INET6))


def check(server, balancing):
    """ValueError where the server's socket cannot be balanced that way."""
    if balancing != "reuseport":
        return
    if not _reuseport_capable(server):
        raise ValueError("%s: balancing='reuseport' needs a TCP or UDP socket on a system "
                         "with SO_REUSEPORT; use balancing='shared'" % type(server).__name__)
    if not server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
        raise ValueError("%s: balancing='reuseport': the listening socket was bound without "
                         "SO_REUSEPORT (a socket passed in by a service manager must have it "
                         "set); use balancing='shared'" % type(server).__name__)


class Listeners:
    """The parent's listeners, by worker index."""

    def __init__(self, server, balancing):
        check(server, balancing)
        self.server = server
        self.balancing = balancing
        self._by_index = {0: server.socket}

    def for_index(self, index):
        """The listener worker ``index`` serves (made now for a new reuseport index)."""
        if self.balancing == "shared":
            return self.server.socket
        sock = self._by_index.get(index)
        if sock is None:
            sock = self._by_index[index] = self._make_peer()
        return sock

    def others(self, index):
        """The listeners a worker of ``index`` holds but must not serve (it closes them)."""
        mine = self.for_index(index)
        return [sock for sock in self._by_index.values() if sock is not mine]

    def _make_peer(self):
        """Another listener in the server's SO_REUSEPORT group, like the first."""
        first = self.server.socket
        sock = socket.socket(first.family, first.type, first.proto)
        try:
            if first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if first.family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                                first.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
            sock.bind(first.getsockname())
            if first.type == socket.SOCK_STREAM:
                sock.listen(getattr(self.server, "request_queue_size", 5))
        except BaseException:
            sock.close()
            raise
        return sock

    def retire_index(self, index):
        """A reuseport index goes away: refuse its new handshakes and close the parent's copy
        (the worker still serving it empties its queue, then closes the last copy).  Returns
        whether new handshakes are refused.  Index 0 is the server's own socket: kept."""
        if self.balancing != "reuseport" or index == 0:
            return False
        sock = self._by_index.pop(index, None)
        if sock is None:
            return False
        refused = sock.type == socket.SOCK_STREAM and refuse_new_connections(sock)
        sock.close()
        return refused

    def stop_all(self):
        """The server stops: refuse new handshakes on every listener and close the parent's
        copies (the server's own socket included: a prefork server serves once); the workers
        empty the queues and close the last copies."""
        refused = True
        for sock in self._by_index.values():
            if sock.type == socket.SOCK_STREAM and sock.fileno() >= 0:
                refused = refuse_new_connections(sock) and refused
        for sock in self._by_index.values():
            sock.close()
        return refused

    def release_all(self):
        """Hand over: close the parent's copies only (another program serves these
        listeners now; their queues are its)."""
        for sock in self._by_index.values():
            sock.close()

    def close(self):
        for index, sock in list(self._by_index.items()):
            if index != 0:
                sock.close()
        self._by_index = {0: self.server.socket}
