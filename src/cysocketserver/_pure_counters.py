"""A server's counters in pure Python: the same seam as the compiled ``_counters``.

The compiled methods are atomic because they run in C under the GIL; here a lock makes each
update atomic, so handler threads may call them concurrently.
"""
import threading

__all__ = ["Meter", "Counters"]


class Meter:
    """Bytes received and sent on one connection (through rfile/wfile or a cooperative socket)."""

    __slots__ = ("received", "sent")

    def __init__(self):
        self.received = 0
        self.sent = 0

    def __repr__(self):
        return "<Meter received=%d sent=%d>" % (self.received, self.sent)


class Counters:
    """A server's totals since it was built (``stats()`` reads them)."""

    __slots__ = ("_lock", "connections_total", "connections_rejected_total",
                 "handler_errors_total", "accept_errors_total", "idle_closed_total",
                 "drain_finished_total", "drain_cut_total",
                 "bytes_received_closed", "bytes_sent_closed")

    def __init__(self):
        self._lock = threading.Lock()
        self.connections_total = 0
        self.connections_rejected_total = 0
        self.handler_errors_total = 0
        self.accept_errors_total = 0
        self.idle_closed_total = 0
        self.drain_finished_total = 0
        self.drain_cut_total = 0
        self.bytes_received_closed = 0
        self.bytes_sent_closed = 0

    def connection_opened(self):
        with self._lock:
            self.connections_total += 1

    def connection_rejected(self):
        with self._lock:
            self.connections_rejected_total += 1

    def handler_error(self):
        with self._lock:
            self.handler_errors_total += 1

    def accept_error(self):
        with self._lock:
            self.accept_errors_total += 1

    def idle_closed(self, count=1):
        with self._lock:
            self.idle_closed_total += count

    def drained(self, finished, cut):
        with self._lock:
            self.drain_finished_total += finished
            self.drain_cut_total += cut

    def fold(self, meter):
        """Add an ended connection's bytes to the totals."""
        with self._lock:
            self.bytes_received_closed += meter.received
            self.bytes_sent_closed += meter.sent
