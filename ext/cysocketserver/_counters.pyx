# cython: freethreading_compatible = False, auto_pickle = False
"""A server's counters, compiled; the pure-Python twin is ``_pure_counters``.

``Meter``: the bytes one connection has moved.  The compiled streams add to it in C after each
recv()/send(), so counting costs an addition per system call.

``Counters``: the server's running totals.  Each method is one C function that runs with the GIL
held and calls no Python code, so handler threads may call them concurrently without a lock.
What to count and when is decided in ``core``; this is only where the numbers live.
"""
cimport cython

__all__ = ["Meter", "Counters"]


@cython.final
cdef class Meter:
    """Bytes received and sent on one connection (through rfile/wfile or a cooperative socket)."""

    def __repr__(self):
        return "<Meter received=%d sent=%d>" % (self.received, self.sent)


@cython.final
cdef class Counters:
    """A server's totals since it was built (``stats()`` reads them)."""

    cdef readonly unsigned long long connections_total
    cdef readonly unsigned long long connections_rejected_total
    cdef readonly unsigned long long handler_errors_total
    cdef readonly unsigned long long accept_errors_total
    cdef readonly unsigned long long idle_closed_total
    cdef readonly unsigned long long drain_finished_total
    cdef readonly unsigned long long drain_cut_total
    # Bytes of connections that have ended; the live ones are still in their meters.
    cdef readonly unsigned long long bytes_received_closed
    cdef readonly unsigned long long bytes_sent_closed

    def connection_opened(self):
        self.connections_total += 1

    def connection_rejected(self):
        self.connections_rejected_total += 1

    def handler_error(self):
        self.handler_errors_total += 1

    def accept_error(self):
        self.accept_errors_total += 1

    def idle_closed(self, unsigned long long count=1):
        self.idle_closed_total += count

    def drained(self, unsigned long long finished, unsigned long long cut):
        self.drain_finished_total += finished
        self.drain_cut_total += cut

    def fold(self, Meter meter not None):
        """Add an ended connection's bytes to the totals."""
        self.bytes_received_closed += meter.received
        self.bytes_sent_closed += meter.sent
