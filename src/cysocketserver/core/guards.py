"""The production guards, written once for every server family: their settings, the idle sweep
and the drain.

- ``max_connections``: at the limit the serve loop stops watching the listener (the kernel's
  backlog holds the rest) and resumes below it (``plan.make_plan`` and ``attach``).
- ``max_connections_per_client``: a connection from a host that already has this many is closed
  at once, before verify_request() (``admission.make_admit``).
- ``idle_timeout``: a connection that has received no byte for this long is cut by the sweep
  (``IdleSweep``), whatever its handler is doing: its pending read returns end-of-stream.
- ``drain_timeout``: server_close() (``drain``) waits up to this long for the running handlers,
  then cuts the connections still open.

A cut is ``shutdown(SHUT_RDWR)`` on the connection's socket: a read the handler is blocked in
returns end-of-stream (b"") in a thread and in a greenlet alike, a write fails, and the handler
then ends and releases the connection as usual.
"""
import socket
import sys
import threading
from time import monotonic

from .settings import checked, positive_int, seconds

__all__ = ["GUARDS", "Guards", "settings", "check", "attach", "IdleSweep", "idle_seconds",
           "drain", "NAP"]

GUARDS = ("max_connections", "max_connections_per_client", "idle_timeout", "drain_timeout")
# How often drain() looks whether the handlers have finished.
NAP = 0.01
# Linux keeps, per TCP socket, the milliseconds since data last arrived (struct tcp_info's
# tcpi_last_data_recv, at this offset): the idle time at no cost to the request path.
# (Other systems' struct tcp_info differ: they measure with the byte meter.)
_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
_TCP_INFO_SIZE = 104
_LAST_DATA_RECV_OFFSET = 52
# The idle sweep wakes at least this often (to notice a server that was dropped unclosed), and
# looks again at connections without tcp_info at least four times per idle_timeout.
_SWEEP_MAX = 1.0
_FALLBACK_LOOKS = 4


class Guards:
    """One server's guard settings, checked."""

    __slots__ = ("max_connections", "max_connections_per_client", "idle_timeout",
                 "drain_timeout")
    max_connections: "int | None"
    max_connections_per_client: "int | None"
    idle_timeout: "float | None"
    drain_timeout: "float | None"

    def __init__(self, values):
        for name in GUARDS:
            setattr(self, name, values[name])

    @property
    def any(self):
        return any(getattr(self, name) is not None for name in GUARDS)


def settings(server):
    """The server's guards as they are now, checked: TypeError or ValueError for a bad value."""
    guards = Guards({
        "max_connections": checked(server, "max_connections", positive_int,
                                   none_means="no limit"),
        "max_connections_per_client": checked(server, "max_connections_per_client",
                                              positive_int, none_means="no limit"),
        "idle_timeout": checked(server, "idle_timeout", seconds, none_means="off"),
        # 0: cut every connection at once.
        "drain_timeout": checked(server, "drain_timeout", seconds, zero_ok=True,
                                 none_means="off"),
    })
    if not guards.any:
        return guards
    used = ", ".join(name for name in GUARDS if getattr(guards, name) is not None)
    if getattr(server, "socket_type", socket.SOCK_STREAM) != socket.SOCK_STREAM:
        raise ValueError("%s: %s cannot apply: a datagram server has no connections"
                         % (type(server).__name__, used))
    concurrency = getattr(server, "_model_class", None)
    if not getattr(concurrency, "keeps_connections", True):
        raise ValueError(
            "%s: %s cannot apply: each connection is handed to a child process, so the server "
            "holds no live connections (bound the children with max_children)"
            % (type(server).__name__, used))
    return guards


def check(server):
    """Raise TypeError/ValueError now for a guard set to a bad value."""
    settings(server)


def attach(server, guards, loop):
    """Connect the max_connections gate to ``loop``: whenever a connection leaves and there is
    room again, the loop resumes watching the listener."""
    registry = server._connection_registry
    limit = guards.max_connections
    if limit is None:
        registry.on_room = None
        return

    def on_room():
        if len(registry) < limit:
            loop.resume_accepting()

    registry.on_room = on_room


# -- idle connections -------------------------------------------------------------------------

def idle_seconds(entry, now):
    """How long ``entry``'s connection has received nothing, and whether that is exact (the
    kernel's figure for a TCP socket) or measured between looks (from its byte meter: what the
    handler has read).  None when the socket is closed already."""
    sock = entry.request
    if _TCP_INFO is not None and getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
        except OSError:
            return None, True
        if len(info) >= _LAST_DATA_RECV_OFFSET + 4:
            millis = int.from_bytes(
                info[_LAST_DATA_RECV_OFFSET:_LAST_DATA_RECV_OFFSET + 4], sys.byteorder)
            return millis / 1000.0, True
    received = entry.meter.received
    if received != entry.seen_received:
        entry.seen_received = received
        entry.last_activity = now
    return now - entry.last_activity, False


class IdleSweep:
    """The one housekeeping thread of a server with an ``idle_timeout``: it looks at each live
    connection when it could first have been idle that long, and cuts those that were.

    A thread rather than a timer in the serve loop, so that it keeps time whatever the loop is
    doing (a plain server busy in a handler, handle_request() called now and then, a greenlet
    server's hub) and costs the request path nothing.  It holds the server weakly and ends with
    server_close() or with the server.
    """

    def __init__(self, server, idle_timeout):
        self.idle_timeout = idle_timeout
        import weakref  # only servers with an idle_timeout need it

        self._server = weakref.ref(server)
        self._registry = server._connection_registry
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name="%s-idle-sweep" % type(server).__name__)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def running(self):
        return self._thread.is_alive() and not self._stop.is_set()

    def _run(self):
        while not self._stop.is_set():
            pause = self.sweep(monotonic())
            if self._stop.wait(pause) or self._server() is None:
                return

    def sweep(self, now):
        """Cut the connections idle for idle_timeout; returns the seconds until the next look."""
        limit = self.idle_timeout
        next_look = now + min(limit, _SWEEP_MAX)
        due = []
        for entry in self._registry:
            if entry.next_check > now:
                next_look = min(next_look, entry.next_check)
                continue
            idle, exact = idle_seconds(entry, now)
            if idle is None:
                continue
            if idle >= limit:
                due.append(entry)
                continue
            # Nothing can make it idle sooner than this (data arriving only pushes it later).
            left = limit - idle
            if not exact:
                left = min(left, limit / _FALLBACK_LOOKS)
            entry.next_check = now + left
            next_look = min(next_look, entry.next_check)
        if due:
            cut = self._registry.cut(due)
            if cut:
                self._registry.counters.idle_closed(cut)
        return max(0.001, next_look - monotonic())


# -- draining -----------------------------------------------------------------------------------

def drain(server, nap):
    """server_close()'s drain, once the listener is closed: wait up to ``drain_timeout`` for the
    connections open now to end (``nap(seconds)`` waits in the way the concurrency model needs),
    then cut the rest.  Counts both; returns (finished, cut), or None when there is no drain."""
    timeout = settings(server).drain_timeout
    registry = server._connection_registry
    if timeout is None or not len(registry):
        return None
    # One drain at a time: a greenlet server drains in serve_forever() after shutdown(), and
    # server_close() from another thread meanwhile waits for that drain instead of running its
    # own (each connection is counted once).
    lock = registry.drain_lock
    if not lock.acquire(blocking=False):
        while not lock.acquire(blocking=False):
            nap(NAP)
        lock.release()
        return None
    try:
        live = list(registry)
        deadline = monotonic() + timeout
        while len(registry):
            left = deadline - monotonic()
            if left <= 0:
                break
            nap(min(NAP, left))
        cut = registry.cut(live)
        finished = len(live) - cut
        registry.counters.drained(finished, cut)
        return finished, cut
    finally:
        lock.release()
