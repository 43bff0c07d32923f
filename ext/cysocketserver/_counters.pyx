# cython: freethreading_compatible = False, auto_pickle = False
"""A server's counters, compiled; the pure-Python twin is ``_pure_counters``.

``Meter``: the bytes one connection has moved.  The compiled streams add to it in C after each
recv()/send(), so counting costs an addition per system call.

``Counters``: the server's running totals.  Each method is one C function that runs with the GIL
held and calls no Python code, so handler threads may call them concurrently without a lock.
What to count and when is decided in ``core``; this is only where the numbers live.

The totals live in cells, native unsigned 64-bit integers in ``Counters.FIELDS`` order: in the
object itself, or in a caller's buffer (``Counters(buffer)``, e.g. a slice of a shared anonymous
mmap) so that another process can read them while this one counts.
"""
cimport cython
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBuffer_IsContiguous,
                             PyBUF_STRIDES)
from libc.stdint cimport uintptr_t

__all__ = ["Meter", "Counters"]


@cython.final
cdef class Meter:
    """Bytes received and sent on one connection (through rfile/wfile or a cooperative socket)."""

    def __repr__(self):
        return "<Meter received=%d sent=%d>" % (self.received, self.sent)


# Cell indices, in FIELDS order (the layout other processes read: keep them in step).
cdef enum:
    CONNECTIONS = 0
    CONNECTIONS_CLOSED
    CONNECTIONS_REJECTED
    HANDLER_ERRORS
    ACCEPT_ERRORS
    IDLE_CLOSED
    DRAIN_FINISHED
    DRAIN_CUT
    BYTES_RECEIVED_CLOSED
    BYTES_SENT_CLOSED
    CELL_COUNT

_FIELDS = ("connections_total", "connections_closed_total", "connections_rejected_total",
           "handler_errors_total", "accept_errors_total", "idle_closed_total",
           "drain_finished_total", "drain_cut_total",
           "bytes_received_closed", "bytes_sent_closed")
assert len(_FIELDS) == CELL_COUNT


@cython.final
cdef class Counters:
    """A server's totals since it was built (``stats()`` reads them).

    ``Counters()`` keeps them in the object.  ``Counters(buffer)`` keeps them in ``buffer``: a
    writable, C-contiguous buffer of at least ``SIZE`` bytes starting on an 8-byte boundary,
    whose first ``SIZE`` bytes hold one native unsigned 64-bit integer per name of ``FIELDS``,
    in that order.  The values already there are the starting totals (zero a fresh slot); the
    buffer's exporter is held, and cannot be resized or closed, while the Counters lives.
    """

    FIELDS = _FIELDS
    SIZE = CELL_COUNT * sizeof(unsigned long long)

    cdef unsigned long long *cells
    cdef unsigned long long private_cells[CELL_COUNT]
    cdef Py_buffer view
    cdef bint has_view

    def __cinit__(self, buffer=None):
        cdef Py_ssize_t size = CELL_COUNT * sizeof(unsigned long long)
        self.cells = self.private_cells
        if buffer is None:
            return
        # Plain PyBUF_STRIDES, so that a read-only or non-contiguous buffer is described rather
        # than refused, and the error below can say what is wrong with it.
        PyObject_GetBuffer(buffer, &self.view, PyBUF_STRIDES)
        self.has_view = True
        if self.view.readonly:
            raise TypeError("Counters needs a writable buffer, not a read-only %s"
                            % type(buffer).__name__)
        if not PyBuffer_IsContiguous(&self.view, b'C'):
            raise ValueError("Counters needs a C-contiguous buffer")
        if self.view.len < size:
            raise ValueError("Counters needs a buffer of at least %d bytes, not %d"
                             % (size, self.view.len))
        if <uintptr_t>self.view.buf % sizeof(unsigned long long):
            raise ValueError("Counters needs a buffer that starts on an 8-byte boundary")
        self.cells = <unsigned long long *>self.view.buf

    def __dealloc__(self):
        self.cells = self.private_cells
        if self.has_view:
            self.has_view = False
            PyBuffer_Release(&self.view)

    @property
    def connections_total(self):
        return self.cells[CONNECTIONS]

    @property
    def connections_closed_total(self):
        return self.cells[CONNECTIONS_CLOSED]

    @property
    def connections_rejected_total(self):
        return self.cells[CONNECTIONS_REJECTED]

    @property
    def handler_errors_total(self):
        return self.cells[HANDLER_ERRORS]

    @property
    def accept_errors_total(self):
        return self.cells[ACCEPT_ERRORS]

    @property
    def idle_closed_total(self):
        return self.cells[IDLE_CLOSED]

    @property
    def drain_finished_total(self):
        return self.cells[DRAIN_FINISHED]

    @property
    def drain_cut_total(self):
        return self.cells[DRAIN_CUT]

    # Bytes of connections that have ended; the live ones are still in their meters.
    @property
    def bytes_received_closed(self):
        return self.cells[BYTES_RECEIVED_CLOSED]

    @property
    def bytes_sent_closed(self):
        return self.cells[BYTES_SENT_CLOSED]

    def connection_opened(self):
        self.cells[CONNECTIONS] += 1

    def connection_rejected(self):
        self.cells[CONNECTIONS_REJECTED] += 1

    def handler_error(self):
        self.cells[HANDLER_ERRORS] += 1

    def accept_error(self):
        self.cells[ACCEPT_ERRORS] += 1

    def idle_closed(self, unsigned long long count=1):
        self.cells[IDLE_CLOSED] += count

    def drained(self, unsigned long long finished, unsigned long long cut):
        self.cells[DRAIN_FINISHED] += finished
        self.cells[DRAIN_CUT] += cut

    def fold(self, Meter meter not None):
        """A connection has ended: count it, and add its bytes to the totals."""
        self.cells[CONNECTIONS_CLOSED] += 1
        self.cells[BYTES_RECEIVED_CLOSED] += meter.received
        self.cells[BYTES_SENT_CLOSED] += meter.sent
