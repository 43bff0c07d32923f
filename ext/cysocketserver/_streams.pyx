# cython: language_level=3
"""The rfile/wfile streams of StreamRequestHandler, compiled.

``SocketReader(sock, buffer_size)`` gives what ``sock.makefile('rb', buffer_size)``
gives -- an ``io.BufferedReader`` over a ``socket.SocketIO`` -- with the same
buffering algorithm (so even read1/peek/readinto1 return the same bytes), the
same results and the same exceptions, but it drives the file descriptor itself.

``SocketWriter(sock)`` is socketserver's unbuffered ``_SocketWriter``: ``write()``
sends every byte (like ``sendall``) and returns the number of bytes of the buffer.

Syscall discipline: a read served from the buffer makes no system call and keeps
the GIL.  Each recv()/send() runs with the GIL released around the call itself: on
loopback a send runs the receiver's TCP work too, and another handler thread
overlapping it on the other core measured faster, with a lower p99, than holding
the GIL.  In a handler thread, on a socket without timeout, a read is one blocking
recv() that also does the waiting.  Everywhere else a call is tried non-blocking
first, and when it would block we wait with poll() (ppoll() in the main thread
where available, so no signal is missed) in the single overridable method
``_wait()``, which the greenlet servers replace.
The socket's timeout is read only on that slow path.  Sockets whose recv_into/sendall are overridden
(ssl.SSLSocket and friends) go through their Python methods instead; StreamRequestHandler
does not hand them here at all, but asks them for makefile() as the stdlib does (handlers.py).
"""

from cpython.buffer cimport (
    PyBUF_SIMPLE, PyBUF_WRITABLE, PyBUF_WRITE, PyBuffer_Release, PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals, PyErr_Clear, PyErr_SetFromErrno
from cpython.long cimport PyLong_AsSsize_t
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.number cimport PyIndex_Check, PyNumber_AsSsize_t, PyNumber_Index
from cpython.object cimport PyObject, Py_TYPE
from cpython.pythread cimport (
    NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
    PyThread_free_lock, PyThread_get_thread_ident, PyThread_release_lock,
    PyThread_type_lock,
)
from cpython.ref cimport Py_XDECREF
from cpython.unicode cimport PyUnicode_FromString
from libc cimport errno as cerrno
from libc.errno cimport EAGAIN, EINTR
from libc.string cimport memchr, memcpy
from posix.fcntl cimport F_GETFL, O_NONBLOCK, fcntl

from cysocketserver._hub cimport Hub, hub_io_done
from cysocketserver.includes.clock cimport monotonic as _monotonic
from cysocketserver.includes.syscalls cimport (
    EWOULDBLOCK, MSG_DONTWAIT, MSG_NOSIGNAL, POLLIN, POLLOUT, cyss_block_signals, cyss_poll1,
    cyss_restore_signals, cyss_sigstate, pollfd, recv, send,
)

import io
import os
import threading

import _socket

from io import UnsupportedOperation
from socket import SocketIO as _SocketIO

__all__ = ["SocketReader", "SocketWriter"]


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    # Raw-pointer variants for building bytes objects in place.
    PyObject *_new_bytes "PyBytes_FromStringAndSize"(const char *v, Py_ssize_t n) except NULL
    char *_bytes_ptr "PyBytes_AS_STRING"(PyObject *o) noexcept
    int _PyBytes_Resize(PyObject **o, Py_ssize_t newsize) except -1
    # Returns -1 with an exception set; we replace that exception.
    int _get_buffer "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)
    int Py_ReprEnter(object o) except -1
    void Py_ReprLeave(object o)


cdef Py_ssize_t DEFAULT_BUFFER_SIZE = io.DEFAULT_BUFFER_SIZE
cdef object _RECV_INTO = _socket.socket.recv_into
cdef object _SENDALL = _socket.socket.sendall
cdef object _main_thread = threading.main_thread
cdef frozenset _WHENCE = frozenset(
    [0, 1, 2] + [getattr(os, n) for n in ("SEEK_HOLE", "SEEK_DATA") if hasattr(os, n)]
)


# ---------------------------------------------------------------- helpers

cdef unsigned long _main_ident = <unsigned long>_main_thread().ident


def _forget_main_thread():
    # After fork() the forking thread is the child's main thread (threading agrees).
    global _main_ident
    _main_ident = <unsigned long>PyThread_get_thread_ident()


os.register_at_fork(after_in_child=_forget_main_thread)


cdef inline bint _in_main_thread() noexcept:
    return <unsigned long>PyThread_get_thread_ident() == _main_ident


cdef int _raise_errno(int err) except -1:
    # OSError subclass chosen from errno, message from strerror: what the
    # socket module raises.
    cerrno.errno = err
    PyErr_SetFromErrno(OSError)
    return -1


cdef str _tpname(object o):
    return PyUnicode_FromString(Py_TYPE(o).tp_name)


cdef bint _made_nonblocking(int fd) noexcept nogil:
    # A socket without timeout whose descriptor is O_NONBLOCK: someone changed it behind
    # Python's back, and the socket's own calls then fail with EAGAIN instead of waiting.
    cdef int flags = fcntl(fd, F_GETFL)
    return flags != -1 and (flags & O_NONBLOCK) != 0


cdef Py_ssize_t _size_or_none(object obj) except? -2:
    # The io module's "integer or None" argument converter.
    if obj is None:
        return -1
    if PyIndex_Check(obj):
        return PyNumber_AsSsize_t(obj, OverflowError)
    raise TypeError(f"argument should be integer or None, not '{_tpname(obj)}'")


cdef Py_ssize_t _size(object obj) except? -2:
    # The plain Py_ssize_t argument converter.
    return PyLong_AsSsize_t(PyNumber_Index(obj))


cdef object _bad_rwbuffer(str name, object obj):
    return TypeError(
        f"{name}() argument must be read-write bytes-like object, "
        f"not {'None' if obj is None else _tpname(obj)}"
    )


# A bytes object under construction (refcount 1, never seen by Python code
# until finished), so results are built in place instead of joined from chunks.
cdef struct _Bytes:
    PyObject *obj
    Py_ssize_t size
    Py_ssize_t cap


cdef inline void _bytes_init(_Bytes *b) noexcept:
    b.obj = NULL
    b.size = 0
    b.cap = 0


cdef int _bytes_reserve(_Bytes *b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need, cap
    if extra > PY_SSIZE_T_MAX - b.size:
        raise MemoryError()
    need = b.size + extra
    if need <= b.cap:
        return 0
    cap = b.cap + (b.cap >> 1)
    if cap < need:
        cap = need
    if b.obj == NULL:
        b.obj = _new_bytes(NULL, cap)
    else:
        _PyBytes_Resize(&b.obj, cap)  # on failure, b.obj is released and NULL
    b.cap = cap
    return 0


cdef int _bytes_append(_Bytes *b, const char *data, Py_ssize_t n) except -1:
    _bytes_reserve(b, n)
    memcpy(_bytes_ptr(b.obj) + b.size, data, n)
    b.size += n
    return 0


cdef object _bytes_finish(_Bytes *b):
    cdef object res
    if b.obj == NULL:
        return b""
    if b.size != b.cap:
        _PyBytes_Resize(&b.obj, b.size)
    res = <object>b.obj
    Py_XDECREF(b.obj)
    b.obj = NULL
    return res


cdef inline void _bytes_free(_Bytes *b) noexcept:
    Py_XDECREF(b.obj)
    b.obj = NULL


# ---------------------------------------------------------------- base

cdef class _SocketStream:
    """Common base: owns the socket and the single blocking point, _wait()."""

    cdef int _fileno(self) except? -1:
        return self._sock.fileno()

    cdef double _deadline(self) except? -3.0:
        """When a call that would block must give up: -1.0 never (no timeout), 0.0 at once
        (a non-blocking socket), else the CLOCK_MONOTONIC time its timeout ends."""
        timeout = self._sock.gettimeout()
        if timeout is None:
            return -1.0
        cdef double t = timeout
        if t <= 0.0:
            return 0.0
        return _monotonic() + t

    cdef int _wait(self, int fd, short events, double deadline) except -1:
        cdef pollfd pfd
        cdef cyss_sigstate sigs
        cdef int rc, err = 0
        cdef double timeout
        if self._coop_hub is not None:
            # A greenlet server's socket on the compiled hub: park the greenlet, in C.
            return self._coop_hub.wait(fd, events, deadline)
        if self._coop_wait is not None:
            # A greenlet server's socket: park the greenlet on its hub.
            return 1 if self._coop_wait(fd, events, deadline) else 0
        # Only the main thread runs signal handlers (looked up here, on the slow
        # path, so that a fork from another thread is handled).
        cdef bint main = _in_main_thread()
        while True:
            if deadline < 0.0:
                timeout = -1.0
            else:
                timeout = deadline - _monotonic()
                if timeout <= 0.0:
                    return 1
            pfd.fd = fd
            pfd.events = events
            pfd.revents = 0
            if main:
                # Make sure no signal is left pending while we sleep (platform.h).
                cyss_block_signals(&sigs)
                try:
                    PyErr_CheckSignals()
                    with nogil:
                        rc = cyss_poll1(&pfd, timeout, &sigs)
                        if rc < 0:
                            err = cerrno.errno
                finally:
                    cyss_restore_signals(&sigs)
            else:
                sigs.active = 0
                with nogil:
                    rc = cyss_poll1(&pfd, timeout, &sigs)
                    if rc < 0:
                        err = cerrno.errno
            if rc > 0:
                return 0
            if rc == 0:
                continue  # the deadline check above reports the timeout
            if err == EINTR:
                PyErr_CheckSignals()  # a handler's exception propagates
                continue
            return _raise_errno(err)

    # IOBase's private helpers, which some code calls.
    def _checkClosed(self):
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def _checkReadable(self):
        res = self.readable()
        if res is not True:
            raise UnsupportedOperation("File or stream is not readable.")
        return res

    def _checkWritable(self):
        res = self.writable()
        if res is not True:
            raise UnsupportedOperation("File or stream is not writable.")
        return res

    def _checkSeekable(self):
        res = self.seekable()
        if res is not True:
            raise UnsupportedOperation("File or stream is not seekable.")
        return res


cdef bint _cooperative(_SocketStream stream, object sock) except -1:
    # A cooperative socket (cysocketserver.greenlets.GreenSocket) is a real
    # socket driven the same way; only the waiting differs.
    if getattr(type(sock), "_cysocketserver_wait", None) is None:
        return False
    stream._coop_wait = sock._cysocketserver_wait
    hub = getattr(stream._coop_wait, "__self__", None)
    if isinstance(hub, Hub):
        stream._coop_hub = hub
    return True


cdef inline Py_ssize_t _readahead(SocketReader r) noexcept:
    return r._read_end - r._pos if r._read_end != -1 else 0


cdef inline object _take_buffered(SocketReader r, Py_ssize_t n):
    """The next n buffered bytes (n no more than are buffered), consumed."""
    res = PyBytes_FromStringAndSize(r._buf + r._pos, n)
    r._pos += n
    return res


cdef inline int _check_attached(SocketReader r) except -1:
    # BufferedReader's CHECK_INITIALIZED: after detach() almost everything refuses.
    if r._detached:
        raise ValueError("raw stream has been detached")
    return 0


cdef inline bint _is_closed(SocketReader r) except -1:
    # `closed`: we were closed, or someone closed our raw stream directly.
    if r._buf == NULL:
        _check_attached(r)
        return True
    return r._raw is not None and r._raw.closed


cdef inline int _check_closed(SocketReader r, str msg) except -1:
    # BufferedReader's CHECK_CLOSED: closed, and nothing left in the buffer.
    if r._buf == NULL or (r._raw is not None and r._raw.closed and _readahead(r) == 0):
        _check_attached(r)
        raise ValueError(msg)
    return 0


cdef list _iobase_readlines(object f, Py_ssize_t hint):
    # IOBase.readlines(): through iter() and next(), so a subclass's readline() is used.
    cdef list lines = []
    cdef Py_ssize_t total = 0, n
    if hint <= 0:
        lines.extend(f)
        return lines
    for line in f:
        lines.append(line)
        n = len(line)
        if n > hint - total:
            break
        total += n
    return lines


# ---------------------------------------------------------------- reader

cdef class SocketReader(_SocketStream):
    """``sock.makefile('rb', buffer_size)``, compiled.

    Same methods, results and errors as ``io.BufferedReader(socket.SocketIO(sock,
    'rb'), buffer_size)`` (``raw`` and ``detach()`` hand out a ``socket.SocketIO``
    created on first use).  ``buffer_size`` -1 or None means
    ``io.DEFAULT_BUFFER_SIZE``; 0 (an unbuffered raw SocketIO in the standard
    library) is refused.  Given a ``meter`` (``_counters.Meter``), every byte received from
    the socket is added to ``meter.received``.
    """

    def __cinit__(self, sock, buffer_size=-1, Meter meter=None):
        cdef Py_ssize_t size
        self._meter = meter
        self._buf = NULL
        self._read_end = -1
        self._pos = 0
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise RuntimeError("can't allocate read lock")
        size = -1 if buffer_size is None else _size(buffer_size)
        if size < 0:
            size = DEFAULT_BUFFER_SIZE
        if size == 0:
            raise ValueError(
                "SocketReader needs a buffer; for an unbuffered rfile use "
                "sock.makefile('rb', 0)"
            )
        self._buf = <char *>PyMem_Malloc(size)
        if self._buf == NULL:
            raise MemoryError()
        self._size = size
        self._mask = size - 1 if (size & (size - 1)) == 0 else 0
        self._sock = sock
        self._direct = getattr(type(sock), "recv_into", None) is _RECV_INTO
        if not self._direct:
            self._direct = _cooperative(self, sock)
        # Like socket.makefile(): the socket stays open until this is closed.
        try:
            sock._io_refs += 1
        except AttributeError:
            pass
        else:
            self._refcounted = True

    def __dealloc__(self):
        if self._buf != NULL:
            PyMem_Free(self._buf)
            self._buf = NULL
        if self._lock != NULL:
            PyThread_free_lock(self._lock)
            self._lock = NULL

    def __del__(self):
        # IOBase closes on finalization, releasing the socket's reference.
        if not self._detached and not _is_closed(self):
            try:
                self.close()
            except Exception:
                pass

    # -- locking (the same discipline as BufferedReader's) ---------------

    cdef int _enter(self, str closed_msg) except -1:
        cdef unsigned long me = <unsigned long>PyThread_get_thread_ident()
        cdef PyThread_type_lock lock = self._lock
        if not PyThread_acquire_lock(lock, NOWAIT_LOCK):
            if self._owner == me:
                raise RuntimeError(f"reentrant call inside {self!r}")
            with nogil:
                PyThread_acquire_lock(lock, WAIT_LOCK)
        self._owner = me
        if self._buf == NULL and closed_msg is not None:
            # closed (or detached) by another thread while we waited
            self._leave()
            _check_attached(self)
            raise ValueError(closed_msg)
        return 0

    cdef void _leave(self) noexcept:
        self._owner = 0
        PyThread_release_lock(self._lock)

    # -- raw reads: SocketIO.readinto ------------------------------------

    cdef Py_ssize_t _raw_read(self, char *dest, Py_ssize_t n) except -1:
        """Bytes read (0 at EOF), or -2 if a non-blocking socket has nothing."""
        cdef int fd, err
        cdef ssize_t r
        cdef double deadline = -2.0
        if self._raw is not None:
            # Someone has our SocketIO: honour its state as the stdlib would.
            if self._raw.closed:
                raise ValueError("I/O operation on closed file.")
            if self._raw._timeout_occurred:
                self._timed_out = True
        if self._timed_out:
            raise OSError("cannot read from timed out object")
        if not self._direct:
            return self._raw_read_slow(dest, n)
        fd = self._fileno()
        # A handler thread's socket without timeout (ThreadingMixIn's case): one blocking
        # recv() both reads and waits, so a request costs one syscall and one release of
        # the GIL.  Trying MSG_DONTWAIT first cost a second of each, and at 100 connections
        # the extra GIL hand-offs made it measurably slower.  (The main thread polls
        # instead, so that no signal is left pending while it sleeps.)
        cdef bint blocking_recv = False
        if self._coop_wait is None and not _in_main_thread():
            deadline = self._deadline()
            blocking_recv = deadline == -1.0
        elif self._drained:
            # A greenlet's socket that the last recv() emptied (it returned less than asked):
            # in a request/reply exchange the next bytes come only after our reply, so a recv()
            # now would almost always fail with EAGAIN.  Park first, then read: one system call
            # less per request.  (Level-triggered readiness: bytes already there wake us at
            # once.)
            self._drained = False
            deadline = self._deadline()
            if deadline != 0.0:
                if self._wait(fd, POLLIN, deadline):
                    self._set_timed_out()
                    raise TimeoutError("timed out")
                fd = self._fileno()
        while True:
            # The call copies data: without the GIL, like the send (see _sendall).
            with nogil:
                r = recv(fd, dest, <size_t>n, 0 if blocking_recv else MSG_DONTWAIT)
                err = cerrno.errno
            if r >= 0:
                if self._meter is not None:
                    self._meter.received += r
                if self._coop_wait is not None:
                    self._drained = 0 < r < n
                    if self._coop_hub is not None:
                        hub_io_done(self._coop_hub)
                return r
            if err == EINTR:
                PyErr_CheckSignals()
                continue
            if err != EAGAIN and err != EWOULDBLOCK:
                return _raise_errno(err)
            if blocking_recv:
                # A blocking recv() would have waited: the descriptor was made non-blocking
                # behind Python's back.  The socket's recv_into() raises BlockingIOError
                # then, which SocketIO turns into None: no data.
                return -2
            if deadline == -2.0:
                deadline = self._deadline()
            if deadline == 0.0:
                return -2
            if deadline == -1.0 and self._coop_wait is None and _made_nonblocking(fd):
                return -2  # as above
            if self._wait(fd, POLLIN, deadline):
                self._set_timed_out()
                raise TimeoutError("timed out")
            fd = self._fileno()

    cdef int _set_timed_out(self) except -1:
        self._timed_out = True
        if self._raw is not None:
            self._raw._timeout_occurred = True
        return 0

    cdef Py_ssize_t _raw_read_slow(self, char *dest, Py_ssize_t n) except -1:
        cdef Py_ssize_t got
        view = PyMemoryView_FromMemory(dest, n, PyBUF_WRITE)
        try:
            while True:
                try:
                    r = self._sock.recv_into(view)
                except TimeoutError:
                    self._set_timed_out()
                    raise
                except OSError as e:
                    if e.errno == EINTR:
                        continue
                    if e.errno == EAGAIN or e.errno == EWOULDBLOCK:
                        return -2
                    raise
                break
        finally:
            view.release()
        if r is None:
            return -2
        got = PyNumber_AsSsize_t(r, ValueError)
        if got < 0 or got > n:
            raise OSError(
                f"raw readinto() returned invalid length {got} "
                f"(should have been between 0 and {n})"
            )
        if self._meter is not None:
            self._meter.received += got
        return got

    cdef Py_ssize_t _fill(self) except -1:
        # Append one raw read to the buffered data (or start afresh).
        cdef Py_ssize_t start = self._read_end if self._read_end != -1 else 0
        cdef Py_ssize_t n = self._raw_read(self._buf + start, self._size - start)
        if n > 0:
            self._read_end = start + n
        return n

    # -- read --------------------------------------------------------------

    def read(self, size=-1, /):
        cdef Py_ssize_t n = _size_or_none(size), have
        _check_attached(self)
        if n < -1:
            raise ValueError("read length must be non-negative or -1")
        _check_closed(self, "read of closed file")
        if n != -1:
            have = _readahead(self)
            if n <= have:
                return _take_buffered(self, n)
        self._enter("read of closed file")
        try:
            if n == -1:
                return self._read_all_locked()
            return self._read_locked(n)
        finally:
            self._leave()

    cdef object _read_locked(self, Py_ssize_t n):
        cdef Py_ssize_t have = _readahead(self), remaining, written = 0, r
        cdef _Bytes out
        cdef char *p
        if n <= have:
            return _take_buffered(self, n)
        _bytes_init(&out)
        try:
            _bytes_reserve(&out, n)
            p = _bytes_ptr(out.obj)
            remaining = n
            if have > 0:
                memcpy(p, self._buf + self._pos, have)
                remaining -= have
                written = have
                self._pos += have
            self._read_end = -1
            # Whole blocks go straight into the result...
            while remaining > 0:
                if self._mask:
                    r = remaining & ~self._mask
                else:
                    r = self._size * (remaining // self._size)
                if r == 0:
                    break
                r = self._raw_read(p + written, r)
                if r == 0 or r == -2:
                    if r == 0 or written > 0:
                        out.size = written
                        return _bytes_finish(&out)
                    return None
                remaining -= r
                written += r
            # ...and the tail through the buffer, without asking for more
            # once satisfied (a further recv could block).
            self._pos = 0
            self._read_end = 0
            while remaining > 0 and self._read_end < self._size:
                r = self._fill()
                if r == 0 or r == -2:
                    if r == 0 or written > 0:
                        out.size = written
                        return _bytes_finish(&out)
                    return None
                if r > remaining:
                    r = remaining
                memcpy(p + written, self._buf + self._pos, r)
                written += r
                self._pos += r
                remaining -= r
            out.size = written
            return _bytes_finish(&out)
        finally:
            _bytes_free(&out)

    cdef object _read_all_locked(self):
        cdef Py_ssize_t have = _readahead(self), r
        cdef bint got_raw = False, would_block = False
        cdef _Bytes out
        _bytes_init(&out)
        try:
            if have > 0:
                _bytes_append(&out, self._buf + self._pos, have)
                self._pos += have
            self._read_end = -1
            # RawIOBase.readall(): DEFAULT_BUFFER_SIZE reads until EOF or
            # until a non-blocking socket runs dry.
            while True:
                _bytes_reserve(&out, DEFAULT_BUFFER_SIZE)
                r = self._raw_read(_bytes_ptr(out.obj) + out.size, DEFAULT_BUFFER_SIZE)
                if r == -2:
                    would_block = not got_raw
                    break
                if r == 0:
                    break
                out.size += r
                got_raw = True
            if would_block and have == 0:
                return None
            return _bytes_finish(&out)
        finally:
            _bytes_free(&out)

    def read1(self, size=-1, /):
        cdef Py_ssize_t n = _size(size), have
        if n < 0:
            n = self._size
        _check_closed(self, "read of closed file")
        if n == 0:
            return b""
        have = _readahead(self)
        if have > 0:
            return _take_buffered(self, min(n, have))
        self._enter("read of closed file")
        try:
            return self._read1_locked(n)
        finally:
            self._leave()

    cdef object _read1_locked(self, Py_ssize_t n):
        # One raw read of n bytes when nothing is buffered.
        cdef Py_ssize_t have = _readahead(self), r
        cdef _Bytes out
        if have > 0:
            return _take_buffered(self, min(n, have))
        self._read_end = -1
        if n <= self._size:
            # Received into our buffer, which stays marked empty.
            r = self._raw_read(self._buf, n)
            if r == -2:
                r = 0
            return PyBytes_FromStringAndSize(self._buf, r)
        _bytes_init(&out)
        try:
            _bytes_reserve(&out, n)
            r = self._raw_read(_bytes_ptr(out.obj), n)
            out.size = 0 if r == -2 else r
            return _bytes_finish(&out)
        finally:
            _bytes_free(&out)

    # -- readinto ----------------------------------------------------------

    def readinto(self, buffer, /):
        return self._readinto(buffer, False, "readinto")

    def readinto1(self, buffer, /):
        return self._readinto(buffer, True, "readinto1")

    cdef object _readinto(self, object buffer, bint one, str name):
        cdef Py_buffer view
        cdef Py_ssize_t have
        if _get_buffer(buffer, &view, PyBUF_WRITABLE) < 0:
            PyErr_Clear()
            raise _bad_rwbuffer(name, buffer)
        try:
            _check_closed(self, "readinto of closed file")
            have = _readahead(self)
            if have > 0 and have >= view.len:
                memcpy(view.buf, self._buf + self._pos, view.len)
                self._pos += view.len
                return view.len
            self._enter("readinto of closed file")
            try:
                return self._readinto_locked(<char *>view.buf, view.len, one)
            finally:
                self._leave()
        finally:
            PyBuffer_Release(&view)

    cdef object _readinto_locked(self, char *out, Py_ssize_t length, bint one):
        cdef Py_ssize_t n = _readahead(self), written = 0, remaining
        if n > 0:
            if n >= length:
                memcpy(out, self._buf + self._pos, length)
                self._pos += length
                return length
            memcpy(out, self._buf + self._pos, n)
            self._pos += n
            written = n
        self._read_end = -1
        self._pos = 0
        remaining = length - written
        while remaining > 0:
            if remaining > self._size:
                # More than a buffer's worth: straight into the caller's memory.
                n = self._raw_read(out + written, remaining)
            elif not (one and written):
                n = self._fill()
                if n > 0:
                    if n > remaining:
                        n = remaining
                    memcpy(out + written, self._buf + self._pos, n)
                    self._pos += n
                    written += n
                    remaining -= n
                    continue
            else:
                n = 0
            if n == 0 or (n == -2 and written > 0):
                break
            if n == -2:
                return None
            written += n
            if one:
                break
            remaining -= n
        return written

    # -- readline and iteration -------------------------------------------

    def readline(self, size=-1, /):
        return self._readline(_size_or_none(size))

    cdef object _readline(self, Py_ssize_t limit):
        cdef Py_ssize_t n
        cdef const char *start
        cdef const char *s
        _check_closed(self, "readline of closed file")
        n = _readahead(self)
        if limit >= 0 and n > limit:
            n = limit
        start = self._buf + self._pos
        s = <const char *>memchr(start, c'\n', n)
        if s != NULL:
            n = s - start + 1
        elif n != limit:
            self._enter("readline of closed file")
            try:
                return self._readline_locked(limit)
            finally:
                self._leave()
        res = PyBytes_FromStringAndSize(start, n)
        self._pos += n
        return res

    cdef object _readline_locked(self, Py_ssize_t limit):
        cdef Py_ssize_t n
        cdef const char *start
        cdef const char *s
        cdef _Bytes out
        # Look again: another thread may have filled the buffer meanwhile.
        n = _readahead(self)
        if limit >= 0 and n > limit:
            n = limit
        start = self._buf + self._pos
        s = <const char *>memchr(start, c'\n', n)
        if s != NULL or n == limit:
            if s != NULL:
                n = s - start + 1
            res = PyBytes_FromStringAndSize(start, n)
            self._pos += n
            return res
        _bytes_init(&out)
        try:
            if n > 0:
                _bytes_append(&out, start, n)
                self._pos += n
                if limit >= 0:
                    limit -= n
            while True:
                self._read_end = -1
                n = self._fill()
                if n <= 0:
                    break  # EOF, or a non-blocking socket ran dry
                if limit >= 0 and n > limit:
                    n = limit
                s = <const char *>memchr(self._buf, c'\n', n)
                if s != NULL:
                    n = s - self._buf + 1
                    _bytes_append(&out, self._buf, n)
                    self._pos = n
                    break
                _bytes_append(&out, self._buf, n)
                if n == limit:
                    self._pos = n
                    break
                if limit >= 0:
                    limit -= n
            return _bytes_finish(&out)
        finally:
            _bytes_free(&out)

    def __iter__(self):
        if _is_closed(self):
            raise ValueError("I/O operation on closed file.")
        return self

    def __next__(self):
        _check_attached(self)
        if type(self) is SocketReader:
            line = self._readline(-1)
        else:
            # As BufferedReader: a subclass's readline() makes its lines.
            line = self.readline()
            if not isinstance(line, bytes):
                raise OSError(
                    f"readline() should have returned a bytes object, not '{_tpname(line)}'"
                )
        if PyBytes_GET_SIZE(line) == 0:
            raise StopIteration
        return line

    def readlines(self, hint=-1, /):
        cdef Py_ssize_t h = _size_or_none(hint), total = 0, n
        cdef list lines = []
        if type(self) is not SocketReader:
            return _iobase_readlines(self, h)
        if _is_closed(self):
            raise ValueError("I/O operation on closed file.")
        while True:
            line = self._readline(-1)
            n = PyBytes_GET_SIZE(line)
            if n == 0:
                break
            lines.append(line)
            if h > 0:
                if n > h - total:
                    break
                total += n
        return lines

    # -- peek --------------------------------------------------------------

    def peek(self, size=0, /):
        cdef Py_ssize_t have
        _size(size)  # checked, then ignored, as by BufferedReader
        _check_closed(self, "peek of closed file")
        have = _readahead(self)
        if have > 0:
            return PyBytes_FromStringAndSize(self._buf + self._pos, have)
        self._enter("peek of closed file")
        try:
            return self._peek_locked()
        finally:
            self._leave()

    cdef object _peek_locked(self):
        cdef Py_ssize_t have = _readahead(self), r
        if have > 0:
            return PyBytes_FromStringAndSize(self._buf + self._pos, have)
        self._read_end = -1
        r = self._fill()
        if r == -2:
            r = 0
        self._pos = 0
        return PyBytes_FromStringAndSize(self._buf, r)

    # -- closing -----------------------------------------------------------

    def close(self):
        self._close()

    cdef int _close(self) except -1:
        cdef object sock
        if _is_closed(self):
            return 0
        self._enter(None)
        try:
            if self._buf == NULL:
                return 0
            PyMem_Free(self._buf)
            self._buf = NULL
            self._read_end = 0
            self._pos = 0
            sock = self._sock
            self._sock = None
            if self._refcounted:
                self._refcounted = False
                if self._raw is not None:
                    self._raw.close()  # SocketIO.close() releases the socket
                else:
                    sock._decref_socketios()
            elif self._raw is not None:
                io.RawIOBase.close(self._raw)
        finally:
            self._leave()
        return 0

    @property
    def closed(self):
        return _is_closed(self)

    def __enter__(self):
        if _is_closed(self):
            raise ValueError("I/O operation on closed file.")
        return self

    def __exit__(self, *args):
        self.close()

    # -- the rest of the file API ------------------------------------------

    @property
    def name(self):
        if _is_closed(self):
            return -1
        return self._sock.fileno()

    @property
    def mode(self):
        _check_attached(self)
        return "rb"

    @property
    def raw(self):
        """A socket.SocketIO for the socket, made on first use (what makefile()
        wraps); it takes over releasing the socket when this reader closes.
        None once detached."""
        if self._raw is None and not self._detached:
            if _is_closed(self):
                raw = _SocketIO(None, "rb")
                io.RawIOBase.close(raw)
            else:
                raw = _SocketIO(self._sock, "rb")
                raw._timeout_occurred = self._timed_out
            self._raw = raw
        return self._raw

    def fileno(self):
        if _is_closed(self):
            raise ValueError("I/O operation on closed file.")
        return self._sock.fileno()

    def readable(self):
        if _is_closed(self):
            raise ValueError("I/O operation on closed socket.")
        return True

    def writable(self):
        return False

    def seekable(self):
        if _is_closed(self):
            raise ValueError("I/O operation on closed socket.")
        return False

    def isatty(self):
        if _is_closed(self):
            raise ValueError("I/O operation on closed file.")
        return False

    def flush(self):
        if _is_closed(self):
            raise ValueError("I/O operation on closed file.")

    def tell(self):
        _check_attached(self)
        raise UnsupportedOperation("seek")

    def seek(self, target, whence=0, /):
        cdef int w = whence
        _check_attached(self)
        if w not in _WHENCE:
            raise ValueError(f"whence value {w} unsupported")
        _check_closed(self, "seek of closed file")
        raise UnsupportedOperation("File or stream is not seekable.")

    def truncate(self, pos=None, /):
        _check_closed(self, "truncate of closed file")
        raise UnsupportedOperation("truncate")

    def write(self, *args):
        raise UnsupportedOperation("write")

    def writelines(self, lines, /):
        if _is_closed(self):
            raise ValueError("I/O operation on closed file.")
        for line in lines:
            self.write(line)

    def detach(self):
        """Hand over the raw SocketIO (which then owns the socket's reference); the
        buffered bytes are dropped and the reader refuses any further use."""
        _check_attached(self)
        self.flush()
        raw = self.raw
        self._enter(None)
        try:
            PyMem_Free(self._buf)
            self._buf = NULL
            self._read_end = 0
            self._pos = 0
            self._sock = None
            self._raw = None
            self._refcounted = False
            self._detached = True
        finally:
            self._leave()
        return raw

    def __repr__(self):
        # BufferedReader's: the type's name, and the name unless that fails (detached).
        tp = _tpname(self)
        try:
            name = getattr(self, "name")
        except (ValueError, AttributeError):
            return f"<{tp}>"
        if Py_ReprEnter(self):
            raise RuntimeError(f"reentrant call inside {tp}.__repr__")
        try:
            return f"<{tp} name={name!r}>"
        finally:
            Py_ReprLeave(self)


# ---------------------------------------------------------------- writer

cdef int _refuse_readinto(object buffer, str name, str operation) except -1:
    """A write-only stream's readinto/readinto1: the stdlib checks the buffer, then refuses."""
    cdef Py_buffer view
    if _get_buffer(buffer, &view, PyBUF_WRITABLE) < 0:
        PyErr_Clear()
        raise _bad_rwbuffer(name, buffer)
    PyBuffer_Release(&view)
    raise UnsupportedOperation(operation)


cdef class SocketWriter(_SocketStream):
    """socketserver's unbuffered wfile, compiled.

    ``write(b)`` sends all of ``b`` (any C-contiguous buffer) or raises, and
    returns its size in bytes; closing the writer does not close the socket.  Given a
    ``meter``, every byte sent is added to ``meter.sent``.
    """

    def __cinit__(self, sock, Meter meter=None):
        self._meter = meter
        self._sock = sock
        self._direct = getattr(type(sock), "sendall", None) is _SENDALL
        if not self._direct:
            self._direct = _cooperative(self, sock)

    def write(self, b, /):
        cdef Py_buffer view
        if not self._direct:
            self._sock.sendall(b)
            with memoryview(b) as m:
                if self._meter is not None:
                    self._meter.sent += m.nbytes
                return m.nbytes
        PyObject_GetBuffer(b, &view, PyBUF_SIMPLE)
        try:
            self._sendall(<const char *>view.buf, view.len)
            return view.len
        finally:
            PyBuffer_Release(&view)

    cdef int _sendall(self, const char *data, Py_ssize_t length) except -1:
        # socket.sendall(): one deadline for the whole buffer; signal handlers
        # run between partial sends; EINTR retries.
        cdef int fd = self._fileno(), err
        cdef ssize_t r
        cdef double deadline = -2.0
        while True:
            # Without the GIL: on loopback a send runs the receiver's side of TCP too, work
            # another thread can overlap on the other core (measured: more requests/s and a
            # lower p99 at 16 and 100 connections than sending with the GIL held).
            with nogil:
                r = send(fd, data, <size_t>length, MSG_DONTWAIT | MSG_NOSIGNAL)
                err = cerrno.errno
            if r >= 0:
                if self._meter is not None:
                    self._meter.sent += r
                data += r
                length -= r
                PyErr_CheckSignals()
                if self._coop_hub is not None:
                    hub_io_done(self._coop_hub)
                if length <= 0:
                    return 0
                continue
            if err == EINTR:
                PyErr_CheckSignals()
                continue
            if err != EAGAIN and err != EWOULDBLOCK:
                return _raise_errno(err)
            if deadline == -2.0:
                deadline = self._deadline()
                if deadline == 0.0:
                    return _raise_errno(err)  # BlockingIOError, like sendall
                if deadline == -1.0 and self._coop_wait is None and _made_nonblocking(fd):
                    # No timeout, yet a non-blocking descriptor (changed behind Python's
                    # back): the socket's sendall() raises BlockingIOError then.
                    return _raise_errno(err)
            if self._wait(fd, POLLOUT, deadline):
                raise TimeoutError("timed out")
            fd = self._fileno()

    def fileno(self):
        return self._sock.fileno()

    @property
    def closed(self):
        return self._closed

    def close(self):
        if not self._closed:
            try:
                self.flush()
            finally:
                self._closed = True

    def flush(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def isatty(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        return False

    def __enter__(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        return self

    def __exit__(self, *args):
        self.close()

    def __iter__(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        return self

    def __next__(self):
        line = self.readline()
        if PyBytes_GET_SIZE(line) == 0:
            raise StopIteration
        return line

    def writelines(self, lines, /):
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        for line in lines:
            self.write(line)

    # BufferedIOBase/IOBase defaults for a write-only stream.
    def read(self, *args):
        raise UnsupportedOperation("read")

    def read1(self, *args):
        raise UnsupportedOperation("read1")

    def readinto(self, buffer, /):
        _refuse_readinto(buffer, "readinto", "read")

    def readinto1(self, buffer, /):
        _refuse_readinto(buffer, "readinto1", "read1")

    def readline(self, size=-1, /):
        if _size_or_none(size) == 0:
            return b""
        raise UnsupportedOperation("read")

    def readlines(self, hint=-1, /):
        _size_or_none(hint)
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        return list(self)

    def tell(self):
        raise UnsupportedOperation("seek")

    def seek(self, *args):
        raise UnsupportedOperation("seek")

    def truncate(self, *args):
        raise UnsupportedOperation("truncate")

    def detach(self):
        raise UnsupportedOperation("detach")


io.BufferedIOBase.register(SocketReader)
io.BufferedIOBase.register(SocketWriter)
