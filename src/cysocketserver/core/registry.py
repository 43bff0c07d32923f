"""Every live connection of one server, from accept to close.

The serve policy adds each accepted stream connection before verify_request() and takes it out
when its request is released (``admission.release``), whichever concurrency model ran it.  Limits,
idle timeouts, drain and statistics read it; the count is one ``len()``.

It also keeps what the guards need and nothing the engine has to know about: how many live
connections each peer host has (``max_connections_per_client``), each connection's byte meter
(the engine's ``Meter``, which the streams add to), and the server's ``Counters``, to which an
ended connection's bytes are added.

One lock guards adding, discarding and cutting: handler threads discard while the serving thread
adds, and a connection must not be cut (``shutdown()`` on its descriptor) while its owner closes
it, or the descriptor number could already belong to a newer connection.
"""
import socket
import threading
from time import monotonic

__all__ = ["Connection", "ConnectionRegistry", "peer_of"]


def peer_of(client_address):
    """The host a client connects from (what ``max_connections_per_client`` counts), or None
    where the address names no host (Unix sockets)."""
    if type(client_address) is tuple and client_address:
        return client_address[0]
    return None


class Connection:
    """One live connection: its socket, the peer, when it started, when it was last seen active,
    who holds it (the thread or greenlet running its handler, None while queued), and its
    byte ``meter``."""

    __slots__ = ("request", "client_address", "peer", "started", "last_activity", "holder",
                 "meter", "seen_received", "next_check", "cut")

    def __init__(self, request, client_address, now, meter):
        self.request = request
        self.client_address = client_address
        self.peer = peer_of(client_address)
        self.started = self.last_activity = now
        self.holder = None
        self.meter = meter
        # For the idle sweep (core.guards): the byte count it last saw, and when to look again.
        self.seen_received = 0
        self.next_check = 0.0
        # Set when a guard shut the connection down (its handler's I/O then fails).
        self.cut = False

    def __repr__(self):
        return "<Connection %r since %.3f>" % (self.client_address, self.started)


class ConnectionRegistry:
    """The live connections of one server, with their per-peer counts and byte meters."""

    __slots__ = ("_live", "_per_peer", "_lock", "counters", "_meter_class", "on_room",
                 "drain_lock", "__weakref__")

    def __init__(self, counters, meter_class):
        self._live = {}
        self._per_peer = {}
        self._lock = threading.Lock()
        self.counters = counters
        self._meter_class = meter_class
        # Called (from any thread) whenever a connection leaves: the max_connections gate.
        self.on_room = None
        # Held while server_close() drains (core.guards.drain): one drain at a time.
        self.drain_lock = threading.Lock()

    def add(self, request, client_address):
        """Register an accepted connection; returns its entry."""
        entry = Connection(request, client_address, monotonic(), self._meter_class())
        peer = entry.peer
        with self._lock:
            self._live[id(request)] = entry
            if peer is not None:
                self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        self.counters.connection_opened()
        return entry

    def count_client(self, request, client_address):
        """How many live connections the host of ``client_address`` has, this one included.
        The connection is counted for that host from now on: with the PROXY protocol, the
        client its header names rather than the proxy."""
        entry = self._live.get(id(request))
        if entry is None:
            return 0
        peer = peer_of(client_address)
        if peer != entry.peer:
            with self._lock:
                self._forget_peer(entry)
                entry.client_address = client_address
                entry.peer = peer
                if peer is not None:
                    self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        if peer is None:
            return 0
        return self._per_peer.get(peer, 0)

    def discard(self, request):
        """Forget a connection (its request is being released); its bytes go to the totals."""
        with self._lock:
            entry = self._live.pop(id(request), None)
            if entry is not None:
                self._forget_peer(entry)
                # Under the lock, so that a byte total read meanwhile never goes backwards.
                self.counters.fold(entry.meter)
        if entry is not None:
            on_room = self.on_room
            if on_room is not None:
                on_room()

    def _forget_peer(self, entry):
        peer = entry.peer
        if peer is not None:
            left = self._per_peer.get(peer, 0) - 1
            if left > 0:
                self._per_peer[peer] = left
            else:
                self._per_peer.pop(peer, None)

    def replace(self, old, new):
        """The request became another object (a greenlet server takes over a plain socket)."""
        with self._lock:
            entry = self._live.pop(id(old), None)
            if entry is not None:
                entry.request = new
                self._live[id(new)] = entry
        return entry

    def get(self, request):
        return self._live.get(id(request))

    def was_cut(self, request):
        """Whether a guard shut this live connection down."""
        entry = self._live.get(id(request))
        return entry is not None and entry.cut

    def meter_for(self, request):
        """The byte meter of a live connection, or None."""
        entry = self._live.get(id(request))
        return None if entry is None else entry.meter

    def cut(self, entries):
        """End the connections still live among ``entries`` whatever their handlers are doing:
        ``shutdown(SHUT_RDWR)``, so a pending read returns end-of-stream and a pending write
        fails.  Their handlers then finish and release them as usual.  Returns how many."""
        cut = 0
        with self._lock:
            for entry in entries:
                if self._live.get(id(entry.request)) is not entry:
                    continue  # released meanwhile
                if entry.cut:
                    # Cut already, its handler not done yet (a busy machine): once is enough,
                    # and counted once.
                    continue
                try:
                    entry.request.shutdown(socket.SHUT_RDWR)
                except (OSError, AttributeError):
                    continue  # already shut down or closed
                entry.cut = True
                cut += 1
        return cut

    def byte_totals(self):
        """(received, sent) so far: the ended connections' bytes and the live ones'."""
        counters = self.counters
        with self._lock:
            received = counters.bytes_received_closed
            sent = counters.bytes_sent_closed
            for entry in self._live.values():
                received += entry.meter.received
                sent += entry.meter.sent
        return received, sent

    def __len__(self):
        return len(self._live)

    def __iter__(self):
        return iter(list(self._live.values()))
