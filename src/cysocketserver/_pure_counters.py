"""A server's counters in pure Python: the same seam as the compiled ``_counters``.

The compiled methods are atomic because they run in C under the GIL; here a lock makes each
update atomic, so handler threads may call them concurrently.  The totals live in the same cells
as there (native unsigned 64-bit integers in ``Counters.FIELDS`` order), so that a buffer filled
by either engine reads the same.
"""
import threading

__all__ = ["Meter", "Counters"]

_FIELDS = ("connections_total", "connections_closed_total", "connections_rejected_total",
           "handler_errors_total", "accept_errors_total", "idle_closed_total",
           "drain_finished_total", "drain_cut_total",
           "bytes_received_closed", "bytes_sent_closed")
_CELL = 8
# The compiled cells are C unsigned long longs: they wrap around, and so do these.
_WRAP = (1 << 64) - 1

try:
    import ctypes

    def _misaligned(view):
        return ctypes.addressof(ctypes.c_char.from_buffer(view)) % _CELL != 0
except ImportError:  # an interpreter without ctypes: buffers are not checked for alignment
    def _misaligned(view):
        return False

(_CONNECTIONS, _CONNECTIONS_CLOSED, _CONNECTIONS_REJECTED, _HANDLER_ERRORS, _ACCEPT_ERRORS,
 _IDLE_CLOSED, _DRAIN_FINISHED, _DRAIN_CUT, _BYTES_RECEIVED_CLOSED,
 _BYTES_SENT_CLOSED) = range(len(_FIELDS))


class Meter:
    """Bytes received and sent on one connection (through rfile/wfile or a cooperative socket)."""

    __slots__ = ("received", "sent")

    def __init__(self):
        self.received = 0
        self.sent = 0

    def __repr__(self):
        return "<Meter received=%d sent=%d>" % (self.received, self.sent)


def _cells_of(buffer, size):
    """``buffer``'s first ``size`` bytes as a memoryview of unsigned 64-bit cells."""
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("Counters needs a writable buffer, not a read-only %s"
                        % type(buffer).__name__)
    if not view.c_contiguous:
        raise ValueError("Counters needs a C-contiguous buffer")
    if view.nbytes < size:
        raise ValueError("Counters needs a buffer of at least %d bytes, not %d"
                         % (size, view.nbytes))
    view = view.cast("B")[:size]
    if _misaligned(view):
        raise ValueError("Counters needs a buffer that starts on an 8-byte boundary")
    return view.cast("Q")


class Counters:
    """A server's totals since it was built (``stats()`` reads them).

    ``Counters()`` keeps them in the object.  ``Counters(buffer)`` keeps them in ``buffer``: a
    writable, C-contiguous buffer of at least ``SIZE`` bytes starting on an 8-byte boundary,
    whose first ``SIZE`` bytes hold one native unsigned 64-bit integer per name of ``FIELDS``,
    in that order.  The values already there are the starting totals (zero a fresh slot); the
    buffer's exporter is held, and cannot be resized or closed, while the Counters lives.
    """

    FIELDS = _FIELDS
    SIZE = len(_FIELDS) * _CELL

    __slots__ = ("_lock", "_cells")

    def __init__(self, buffer=None):
        self._lock = threading.Lock()
        self._cells = _cells_of(bytearray(self.SIZE) if buffer is None else buffer, self.SIZE)

    @property
    def connections_total(self):
        return self._cells[_CONNECTIONS]

    @property
    def connections_closed_total(self):
        return self._cells[_CONNECTIONS_CLOSED]

    @property
    def connections_rejected_total(self):
        return self._cells[_CONNECTIONS_REJECTED]

    @property
    def handler_errors_total(self):
        return self._cells[_HANDLER_ERRORS]

    @property
    def accept_errors_total(self):
        return self._cells[_ACCEPT_ERRORS]

    @property
    def idle_closed_total(self):
        return self._cells[_IDLE_CLOSED]

    @property
    def drain_finished_total(self):
        return self._cells[_DRAIN_FINISHED]

    @property
    def drain_cut_total(self):
        return self._cells[_DRAIN_CUT]

    # Bytes of connections that have ended; the live ones are still in their meters.
    @property
    def bytes_received_closed(self):
        return self._cells[_BYTES_RECEIVED_CLOSED]

    @property
    def bytes_sent_closed(self):
        return self._cells[_BYTES_SENT_CLOSED]

    def _add(self, index, amount):
        cells = self._cells
        with self._lock:
            cells[index] = (cells[index] + amount) & _WRAP

    def connection_opened(self):
        self._add(_CONNECTIONS, 1)

    def connection_rejected(self):
        self._add(_CONNECTIONS_REJECTED, 1)

    def handler_error(self):
        self._add(_HANDLER_ERRORS, 1)

    def accept_error(self):
        self._add(_ACCEPT_ERRORS, 1)

    def idle_closed(self, count=1):
        self._add(_IDLE_CLOSED, count)

    def drained(self, finished, cut):
        cells = self._cells
        with self._lock:
            cells[_DRAIN_FINISHED] = (cells[_DRAIN_FINISHED] + finished) & _WRAP
            cells[_DRAIN_CUT] = (cells[_DRAIN_CUT] + cut) & _WRAP

    def fold(self, meter):
        """A connection has ended: count it, and add its bytes to the totals."""
        cells = self._cells
        with self._lock:
            cells[_CONNECTIONS_CLOSED] = (cells[_CONNECTIONS_CLOSED] + 1) & _WRAP
            cells[_BYTES_RECEIVED_CLOSED] = (cells[_BYTES_RECEIVED_CLOSED] + meter.received) & _WRAP
            cells[_BYTES_SENT_CLOSED] = (cells[_BYTES_SENT_CLOSED] + meter.sent) & _WRAP
