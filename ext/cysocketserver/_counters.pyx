# cython: freethreading_compatible = False, auto_pickle = False
"""A server's counters, compiled; the pure-Python twin is ``_pure_counters``.

``Meter``: the bytes one connection has moved.  The compiled streams add to it in C after each
recv()/send(), so counting costs an addition per system call.

``Counters``: the server's running totals.  Each method is one C function that runs with the GIL
held and calls no Python code, so handler threads may call them concurrently without a lock.
What to count and when is decided in ``core``; this is only where the numbers live.

The totals live in cells, native unsigned 64-bit integers in the order of the fields declared in
``_counterfields`` (``Counters.FIELDS``): in memory of the object's own, or in a caller's buffer
(``Counters(buffer)``, e.g. a slice of a shared anonymous mmap) so that another process can read
them while this one counts.  Each field reads as a read-only attribute of its name.
"""
cimport cython
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBuffer_IsContiguous,
                             PyBUF_STRIDES)
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.object cimport PyTypeObject
from cpython.type cimport PyType_Modified
from libc.stdint cimport uintptr_t

from ._counterfields import FIELDS

__all__ = ["Meter", "Counters"]


@cython.final
cdef class Meter:
    """Bytes received and sent on one connection (through rfile/wfile or a cooperative socket)."""

    def __repr__(self):
        return "<Meter received=%d sent=%d>" % (self.received, self.sent)


# What the methods below add to: each field's cell, found by name in the declaration at import.
cdef Py_ssize_t CELL_COUNT = len(FIELDS)
cdef Py_ssize_t CONNECTIONS = FIELDS.index("connections_total")
cdef Py_ssize_t CONNECTIONS_CLOSED = FIELDS.index("connections_closed_total")
cdef Py_ssize_t CONNECTIONS_REJECTED = FIELDS.index("connections_rejected_total")
cdef Py_ssize_t HANDLER_ERRORS = FIELDS.index("handler_errors_total")
cdef Py_ssize_t ACCEPT_ERRORS = FIELDS.index("accept_errors_total")
cdef Py_ssize_t IDLE_CLOSED = FIELDS.index("idle_closed_total")
cdef Py_ssize_t DRAIN_FINISHED = FIELDS.index("drain_finished_total")
cdef Py_ssize_t DRAIN_CUT = FIELDS.index("drain_cut_total")
cdef Py_ssize_t BYTES_RECEIVED_CLOSED = FIELDS.index("bytes_received_closed")
cdef Py_ssize_t BYTES_SENT_CLOSED = FIELDS.index("bytes_sent_closed")


@cython.final
cdef class Counters:
    """A server's totals since it was built (``stats()`` reads them).

    ``Counters()`` keeps them in the object.  ``Counters(buffer)`` keeps them in ``buffer``: a
    writable, C-contiguous buffer of at least ``SIZE`` bytes starting on an 8-byte boundary,
    whose first ``SIZE`` bytes hold one native unsigned 64-bit integer per name of ``FIELDS``,
    in that order, each read as the attribute of that name.  The values already there are the
    starting totals (zero a fresh slot); the buffer's exporter is held, and cannot be resized
    or closed, while the Counters lives.
    """

    FIELDS = FIELDS
    SIZE = CELL_COUNT * sizeof(unsigned long long)

    cdef unsigned long long *cells
    cdef unsigned long long *private_cells
    cdef Py_buffer view
    cdef bint has_view

    def __cinit__(self, buffer=None):
        cdef Py_ssize_t size = CELL_COUNT * sizeof(unsigned long long)
        if buffer is None:
            self.private_cells = <unsigned long long *>PyMem_Calloc(
                CELL_COUNT, sizeof(unsigned long long))
            if self.private_cells is NULL:
                raise MemoryError()
            self.cells = self.private_cells
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
        self.cells = NULL
        PyMem_Free(self.private_cells)
        self.private_cells = NULL
        if self.has_view:
            self.has_view = False
            PyBuffer_Release(&self.view)

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


@cython.final
cdef class _Total:
    """The read-only attribute of one declared field: its cell's value."""

    cdef Py_ssize_t index

    def __cinit__(self, Py_ssize_t index):
        self.index = index

    def __get__(self, Counters counters, owner):
        if counters is None:
            return self
        return counters.cells[self.index]

    def __set__(self, counters, value):
        raise AttributeError("Counters totals are read-only")

    def __delete__(self, counters):
        raise AttributeError("Counters totals are read-only")


cdef _give_counters_their_fields():
    # An extension type takes no new attributes from Python code once made; this module made it,
    # and adds one to its dict as Cython adds class attributes, then tells the type cache.
    namespace = <dict>(<PyTypeObject *>Counters).tp_dict
    for index, name in enumerate(FIELDS):
        namespace[name] = _Total(index)
    PyType_Modified(Counters)


_give_counters_their_fields()
