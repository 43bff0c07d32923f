from cpython.pythread cimport PyThread_type_lock

from cysocketserver._counters cimport Meter
from cysocketserver._hub cimport Hub


cdef class _SocketStream:
    # The socket (None once a reader is closed) and whether we may drive its
    # file descriptor ourselves (a plain socket.socket) or must go through
    # its Python methods (ssl.SSLSocket and other wrappers).
    cdef readonly object _sock
    cdef bint _direct
    # A cooperative socket's (the greenlet servers') waiter: the bound method
    # sock._cysocketserver_wait(fd, events, deadline) -> True if timed out.
    # The descriptor is driven directly and _wait() parks through it.
    cdef object _coop_wait
    # Where the bytes moved are counted (the connection's meter), or None.
    cdef Meter _meter
    # That waiter's hub, when it is the compiled one: each recv()/send() that did not wait is
    # counted against the running greenlet's turn (_hub.hub_io_done), for fairness.
    cdef Hub _coop_hub
    cdef dict __dict__
    cdef object __weakref__

    cdef int _fileno(self) except? -1
    cdef double _deadline(self) except? -3.0
    # The one place that blocks: wait until fd is ready for `events`
    # (POLLIN/POLLOUT) or until `deadline` (CLOCK_MONOTONIC seconds; < 0 means
    # no deadline).  Returns 0 when the caller should retry its syscall, 1 when
    # the deadline has passed, -1 with an exception set.  A cooperative
    # subclass overrides this to park a greenlet instead of calling poll().
    cdef int _wait(self, int fd, short events, double deadline) except -1


cdef class SocketReader(_SocketStream):
    cdef char *_buf              # NULL once closed
    cdef Py_ssize_t _size        # buffer size
    cdef Py_ssize_t _mask        # _size - 1 when _size is a power of two, else 0
    cdef Py_ssize_t _pos         # next byte to hand out
    cdef Py_ssize_t _read_end    # end of buffered data, -1 when the buffer is invalid
    cdef bint _timed_out         # a recv timed out: later raw reads fail
    cdef bint _drained           # cooperative: the last recv emptied the socket
    cdef bint _refcounted        # we did sock._io_refs += 1
    cdef bint _detached          # detach() handed the socket to its SocketIO
    cdef object _raw             # the SocketIO handed out as .raw, if asked for
    cdef PyThread_type_lock _lock
    cdef unsigned long _owner

    cdef int _enter(self, str closed_msg) except -1
    cdef void _leave(self) noexcept
    cdef Py_ssize_t _raw_read(self, char *dest, Py_ssize_t n) except -1
    cdef Py_ssize_t _raw_read_slow(self, char *dest, Py_ssize_t n) except -1
    cdef int _set_timed_out(self) except -1
    cdef Py_ssize_t _fill(self) except -1
    cdef object _read_locked(self, Py_ssize_t n)
    cdef object _read_all_locked(self)
    cdef object _read1_locked(self, Py_ssize_t n)
    cdef object _peek_locked(self)
    cdef object _readinto(self, object buffer, bint one, str name)
    cdef object _readinto_locked(self, char *out, Py_ssize_t length, bint one)
    cdef object _readline(self, Py_ssize_t limit)
    cdef object _readline_locked(self, Py_ssize_t limit)
    cdef int _close(self) except -1


cdef class SocketWriter(_SocketStream):
    cdef bint _closed

    cdef int _sendall(self, const char *data, Py_ssize_t length) except -1
