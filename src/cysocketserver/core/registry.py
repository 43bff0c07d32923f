"""Every live connection of one server, from accept to close.

The serve policy adds each accepted stream connection before verify_request() and takes it out
when its request is released (``policy.release``), whichever concurrency model ran it.  Limits,
idle timeouts, drain and statistics read it; the count is one ``len()``.

Adding and discarding are single dict operations, atomic under the GIL, so handler threads and
the serving thread may call them concurrently.
"""
import threading
from time import monotonic

__all__ = ["Connection", "ConnectionRegistry"]


class Connection:
    """One live connection: its socket, the peer, when it started, when it was last active,
    and who holds it (the thread or greenlet running its handler, None while queued)."""

    __slots__ = ("request", "client_address", "started", "last_activity", "holder")

    def __init__(self, request, client_address, now):
        self.request = request
        self.client_address = client_address
        self.started = self.last_activity = now
        self.holder = None

    def __repr__(self):
        return "<Connection %r since %.3f>" % (self.client_address, self.started)


class ConnectionRegistry:
    __slots__ = ("_live", "__weakref__")

    def __init__(self):
        self._live = {}

    def add(self, request, client_address):
        entry = Connection(request, client_address, monotonic())
        self._live[id(request)] = entry
        return entry

    def discard(self, request):
        self._live.pop(id(request), None)

    def get(self, request):
        return self._live.get(id(request))

    def claim(self, request):
        """Record that the current thread (or greenlet, by the caller) now runs the request."""
        entry = self._live.get(id(request))
        if entry is not None:
            entry.holder = threading.current_thread()
        return entry

    def __len__(self):
        return len(self._live)

    def __iter__(self):
        return iter(list(self._live.values()))

    def prune(self):
        """Forget connections whose socket was closed without going through the policy (a
        process_request() of the user's that shut it down itself); returns how many."""
        closed = [key for key, entry in list(self._live.items())
                  if getattr(entry.request, "fileno", lambda: -1)() == -1]
        for key in closed:
            self._live.pop(key, None)
        return len(closed)
