"""A server's counters in pure Python: the same seam as the compiled ``_counters``.

The compiled methods are atomic because they run in C under the GIL; here a lock makes each
update atomic, so handler threads may call them concurrently.  The totals live in the same cells
as there (native unsigned 64-bit integers in the order of the fields declared in
``_counterfields``), so that a buffer filled by either engine reads the same.
"""
import threading

from ._counterfields import FIELDS

__all__ = ["Meter", "Counters"]

_CELL = 8
# The compiled cells are C unsigned long longs: they wrap around, and so do these.
_WRAP = (1 << 64) - 1



def _misaligned(view):
    """Whether a caller's buffer is not aligned for 64-bit cells (ctypes is loaded only for
    counters over a caller's buffer, such as the prefork scoreboard's)."""
    try:
        import ctypes
    except ImportError:  # an interpreter without ctypes: buffers are not checked for alignment
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) % _CELL != 0

# What the methods below add to: each field's cell, found by name in the declaration.
_CONNECTIONS = FIELDS.index("connections_total")
_CONNECTIONS_CLOSED = FIELDS.index("connections_closed_total")
_CONNECTIONS_REJECTED = FIELDS.index("connections_rejected_total")
_HANDLER_ERRORS = FIELDS.index("handler_errors_total")
_ACCEPT_ERRORS = FIELDS.index("accept_errors_total")
_IDLE_CLOSED = FIELDS.index("idle_closed_total")
_DRAIN_FINISHED = FIELDS.index("drain_finished_total")
_DRAIN_CUT = FIELDS.index("drain_cut_total")
_BYTES_RECEIVED_CLOSED = FIELDS.index("bytes_received_closed")
_BYTES_SENT_CLOSED = FIELDS.index("bytes_sent_closed")


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
    in that order, each read as the attribute of that name.  The values already there are the
    starting totals (zero a fresh slot); the buffer's exporter is held, and cannot be resized
    or closed, while the Counters lives.
    """

    FIELDS = FIELDS
    SIZE = len(FIELDS) * _CELL

    __slots__ = ("_lock", "_cells")

    def __init__(self, buffer=None):
        self._lock = threading.Lock()
        self._cells = _cells_of(bytearray(self.SIZE) if buffer is None else buffer, self.SIZE)

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


def _total(index):
    """The read-only attribute of the field in cell ``index``."""
    return property(lambda counters: counters._cells[index],
                    doc="The total of field %r." % FIELDS[index])


for _index, _name in enumerate(FIELDS):
    setattr(Counters, _name, _total(_index))
del _index, _name
