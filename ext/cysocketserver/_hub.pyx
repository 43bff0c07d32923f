# cython: freethreading_compatible = False
"""The greenlet hub, compiled: epoll (poll() elsewhere), a timer heap, a ready queue, descriptor
waiters and a wake-up descriptor.  One per OS thread.

The interface and the rules are those of the pure-Python twin, ``cysocketserver._pure_hub``
(whose docstring is the seam); what both share is in ``cysocketserver._hubcommon``:
the hub runs in a greenlet of its own; a greenlet that must wait registers what it waits for
and switches to the hub, and only the hub switches back into a waiting greenlet.  Every park
may return early (a stale wake-up), so callers re-check what they waited for.

Descriptors stay in the epoll set between waits (the next wait is usually the same), so a
request/response cycle makes no epoll_ctl() call; an event nobody waits for any more drops
the interest.  ``forget_fd()`` must be called before a watched descriptor is closed.
A descriptor marked with ``set_exclusive()`` (a listener other processes share) is added with
EPOLLEXCLUSIVE, which the kernel accepts from EPOLL_CTL_ADD only: its changes are a removal
and an addition (``_ctl``).
"""
cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from libc.errno cimport errno, EEXIST, ENOENT, EPERM
from libc.stdint cimport uint32_t, uint64_t

from cysocketserver.includes.clock cimport MAX_WAIT_MS, monotonic as _now, timeout_ms as _timeout_ms
from cysocketserver.includes.errors cimport raise_errno
from cysocketserver.includes.greenlet_api cimport (
    greenlet_dead, greenlet_getcurrent, greenlet_import, greenlet_new, greenlet_parent,
    greenlet_switch, greenlet_throw,
)
from cysocketserver.includes.syscalls cimport *
from cysocketserver.includes.wakeup cimport (
    wakeup_close, wakeup_drain, wakeup_open, wakeup_signal,
)

import functools
import sys
import threading

from cysocketserver._hubcommon import (
    HubBlockedWarning, check_io_budget, describe_block, io_budget_from_env,
)

# Greenlets are switched, thrown into and made through greenlet's C API (the capsule its
# greenlet.h describes), not through Python-level calls.  The greenlet package is loaded when
# the first hub is made, not when this module is imported: the serve loop and the streams
# import this module, and only the greenlet servers need greenlet.
GreenletExit = None


cdef int _load_greenlet() except -1:
    global GreenletExit
    if GreenletExit is not None:
        return 0
    try:
        from greenlet import GreenletExit as exit_class, __version__ as greenlet_version
        # The 12-entry table of includes/greenlet_api.h (greenlet 3 is the declared dependency).
        if int(greenlet_version.split(".")[0]) < 3:
            raise ImportError("greenlet %s is too old" % greenlet_version, name="greenlet")
        greenlet_import()
    except ImportError as exc:
        raise ImportError("the greenlet package is needed: pip install 'greenlet>=3' (%s)" % exc,
                          name="greenlet") from None
    GreenletExit = exit_class
    return 0

__all__ = ["Hub", "HubBlockedWarning"]

# The longest single epoll_wait()/poll() (includes/platform.h), as _hubcommon states it.
MAX_WAIT_SECONDS = MAX_WAIT_MS / 1000.0

cdef enum:
    BACKEND_EPOLL = 1
    BACKEND_POLL = 2
    MAX_EVENTS = 256
    # Cancelled timers are left in the heap; it is rebuilt when they are the most of it.
    COMPACT_MIN = 256
    # A turn with no I/O budget: never spent in practice (and a give-way would be harmless).
    UNLIMITED_TURN = 0x7FFFFFFF

cdef object TIMED_OUT = object()
cdef object _partial = functools.partial
cdef object _get_ident = threading.get_ident


cdef class FdHandler:
    """Compiled code run by the hub's event dispatch itself (see _hub.pxd); the relay is one."""

    cdef int on_event(self, int fd, uint32_t events) except -1:
        return 0

    cdef int on_forget(self, int fd) except -1:
        return 0


@cython.final
cdef class _Fd:
    pass


@cython.final
cdef class _Timer:
    pass


@cython.final
cdef class _Throw:
    pass


cdef inline bint _before(_Timer a, _Timer b) noexcept:
    return a.when < b.when or (a.when == b.when and a.seq < b.seq)


cdef int _heap_push(list heap, _Timer t) except -1:
    cdef Py_ssize_t pos = len(heap), parent
    cdef _Timer p
    heap.append(t)
    while pos > 0:
        parent = (pos - 1) >> 1
        p = <_Timer>heap[parent]
        if not _before(t, p):
            break
        heap[pos] = p
        pos = parent
    heap[pos] = t
    return 0


cdef _Timer _heap_pop(list heap):
    cdef _Timer last = <_Timer>heap.pop()
    cdef _Timer top, c
    cdef Py_ssize_t n = len(heap), pos = 0, child
    if n == 0:
        return last
    top = <_Timer>heap[0]
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        if child + 1 < n and _before(<_Timer>heap[child + 1], <_Timer>heap[child]):
            child += 1
        c = <_Timer>heap[child]
        if not _before(c, last):
            break
        heap[pos] = c
        pos = child
    heap[pos] = last
    return top


cdef object _root(object glet):
    """The thread's main greenlet: the end of glet's chain of parents."""
    cdef PyObject *parent
    while True:
        parent = greenlet_parent(glet)
        if parent == NULL:
            return glet
        glet = <object>parent
        Py_DECREF(glet)  # greenlet_parent() gave a new reference; the chain holds one too


cdef inline object _switch_in(object glet, object value):
    """glet.switch() when value is None, else glet.switch(value)."""
    cdef tuple args
    if value is None:
        return greenlet_switch(glet, NULL)
    args = (value,)
    return greenlet_switch(glet, <PyObject *>args)


cdef int _wait_failed(int err) except -1:
    """epoll_wait()/poll() failed with err: a signal runs its handlers (a spurious wake-up,
    0), anything else raises OSError."""
    if err == EINTR:
        PyErr_CheckSignals()
        return 0
    return raise_errno(err)


@cython.final
cdef class Hub:

    def __cinit__(self):
        cdef epoll_event ev
        self.epfd = -1
        self.wakeup.rfd = self.wakeup.wfd = -1
        _load_greenlet()
        self.thread_ident = _get_ident()
        self.block_warning = None
        self.fds = {}
        self.timers = []
        self.ready = []
        self.calls = []
        # On failure __dealloc__ closes whatever was opened.
        if CYS_HAVE_EPOLL:
            self.backend = BACKEND_EPOLL
            self.epfd = epoll_create1(EPOLL_CLOEXEC)
            if self.epfd < 0:
                raise_errno(errno)
        else:
            self.backend = BACKEND_POLL
        if wakeup_open(&self.wakeup) < 0:
            raise_errno(errno)
        if self.backend == BACKEND_EPOLL:
            ev.events = EPOLLIN
            ev.data.u64 = 0
            ev.data.fd = self.wakeup.rfd
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.wakeup.rfd, &ev) < 0:
                raise_errno(errno)
        self.io_budget = io_budget_from_env()
        self.io_left = self.io_turn
        self.root = _root(greenlet_getcurrent())
        self.glet = greenlet_new(self._run, self.root)

    def __dealloc__(self):
        self._close_fds()
        PyMem_Free(self.pollfds)
        self.pollfds = NULL

    cdef void _close_fds(self) noexcept:
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1
        wakeup_close(&self.wakeup)

    def close(self):
        self._close_fds()

    def abandon(self):
        """In the child of fork(): let go of the parent's hub.

        The epoll set and the wake-up descriptor are the parent's too: close this process's
        copies only (never an epoll_ctl(), which would change the parent's interest set), and
        never run the parent's greenlets here.  If the hub is resumed all the same (a greenlet
        that called fork() ended in the child and returned to it), the child's main greenlet
        gets SystemExit, as a thread that forked would simply have ended.
        """
        self.abandoned = True
        self.ready = []
        self.calls = []
        self.fds = {}
        self._close_fds()

    @property
    def io_budget(self):
        """I/O operations a greenlet may complete in one turn before it gives way (0: no limit)."""
        return 0 if self.io_turn == UNLIMITED_TURN else self.io_turn

    @io_budget.setter
    def io_budget(self, value):
        value = check_io_budget(value)
        self.io_turn = value if value > 0 else UNLIMITED_TURN
        self.io_left = self.io_turn

    def io_done(self):
        """Count an I/O operation that did not wait; give way when the turn's budget is spent."""
        hub_io_done(self)

    cdef int give_way(self) except -1:
        """The running greenlet has spent its turn: queue it behind the others and let the hub
        run them (a new turn starts when the hub switches back)."""
        self.io_left = self.io_turn
        cur = greenlet_getcurrent()
        if cur is self.glet or _get_ident() != self.thread_ident:
            return 0  # the hub's own calls (or a stream used from another thread)
        self.ready.append((cur, None))
        greenlet_switch(self.glet, NULL)
        return 0

    # -- parking ------------------------------------------------------------------------------

    def park(self):
        if greenlet_getcurrent() is self.glet:
            raise RuntimeError("the hub itself cannot wait")
        return greenlet_switch(self.glet, NULL)

    def wake(self, glet, value=None):
        self.ready.append((glet, value))

    def wake_threadsafe(self, glet):
        self.call_threadsafe(self.wake, glet)

    def call_threadsafe(self, fn, *args):
        self.calls.append((fn, args))
        wakeup_signal(&self.wakeup)

    def spawn(self, fn, *args):
        glet = greenlet_new(_partial(fn, *args) if args else fn, self.glet)
        self.ready.append((glet, None))
        return glet

    def kill(self, glet, exc=None):
        cdef _Throw t = _Throw()
        t.exc = exc if exc is not None else GreenletExit()
        self.ready.append((glet, t))

    cdef _Timer _add_timer(self, double when, object glet, object value):
        cdef _Timer t = _Timer()
        self.seq += 1
        t.when = when
        t.seq = self.seq
        t.glet = glet
        t.value = value
        t.active = True
        _heap_push(self.timers, t)
        return t

    cdef int _cancel(self, _Timer t) except -1:
        cdef list alive
        if t.active:
            t.active = False
            t.glet = None
            self.cancelled += 1
            if self.cancelled > COMPACT_MIN and self.cancelled * 2 > len(self.timers):
                alive = [x for x in self.timers if (<_Timer>x).active]
                self.timers = []
                for x in alive:
                    _heap_push(self.timers, <_Timer>x)
                self.cancelled = 0
        return 0

    def sleep(self, double seconds):
        cdef double deadline
        cdef _Timer t
        cur = greenlet_getcurrent()
        if cur is self.glet:
            raise RuntimeError("the hub itself cannot sleep")
        if seconds <= 0:
            self.ready.append((cur, None))
            greenlet_switch(self.glet, NULL)
            return
        deadline = _now() + seconds
        while True:
            t = self._add_timer(deadline, cur, TIMED_OUT)
            try:
                value = greenlet_switch(self.glet, NULL)
            finally:
                self._cancel(t)
            if value is TIMED_OUT or _now() >= deadline:
                return

    # -- descriptors ----------------------------------------------------------------------------

    def wait_fd(self, int fd, int events, double deadline):
        """Park until fd is ready for events (POLLIN/POLLOUT) or the deadline; True: timed out."""
        return self.wait(fd, events, deadline) == 1

    cdef int wait(self, int fd, int events, double deadline) except -1:
        """wait_fd() for C callers (the compiled streams): 1 if timed out, else 0."""
        cdef _Fd ent
        cdef _Timer t = None
        cur = greenlet_getcurrent()
        if cur is self.glet:
            raise RuntimeError("the hub itself cannot wait for a descriptor")
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        ent = self._entry(fd)
        if ent.handler is not None:
            raise RuntimeError(f"fd {fd} is being relayed by the hub")
        if events & POLLIN:
            if ent.reader is not None and ent.reader is not cur:
                raise RuntimeError(f"another greenlet is already waiting to read from fd {fd}")
            ent.reader = cur
        if events & POLLOUT:
            if ent.writer is not None and ent.writer is not cur:
                raise RuntimeError(f"another greenlet is already waiting to write to fd {fd}")
            ent.writer = cur
        try:
            if not self._interest(fd, ent):
                # Not pollable (a regular file): always ready.
                return 0
            if deadline >= 0:
                t = self._add_timer(deadline, cur, TIMED_OUT)
            value = greenlet_switch(self.glet, NULL)
        finally:
            if ent.reader is cur:
                ent.reader = None
            if ent.writer is cur:
                ent.writer = None
            if t is not None:
                self._cancel(t)
        return 1 if value is TIMED_OUT else 0

    cdef _Fd _entry(self, int fd):
        """fd's entry, made on first use."""
        cdef _Fd ent = self.fds.get(fd)
        if ent is None:
            ent = _Fd()
            self.fds[fd] = ent
        return ent

    cdef bint _interest(self, int fd, _Fd ent) except -1:
        """Make sure the waited-for events are reported; False if fd cannot be polled."""
        cdef uint32_t want = 0, mask
        if ent.reader is not None:
            want |= EPOLLIN
        if ent.writer is not None:
            want |= EPOLLOUT
        mask = ent.mask | want
        if mask == ent.mask:
            return True
        if self.backend == BACKEND_EPOLL and self._ctl(fd, ent, mask) < 0:
            if errno == EPERM:
                return False
            return raise_errno(errno)
        ent.mask = mask
        return True

    cdef int _ctl(self, int fd, _Fd ent, uint32_t mask) noexcept:
        """Ask epoll to report ``mask`` for fd (0: remove it), ent.mask being what it reports
        now; what epoll_ctl() returns, errno set on -1."""
        cdef epoll_event ev
        cdef int rc
        ev.events = mask
        ev.data.u64 = 0
        ev.data.fd = fd
        if mask == 0:
            return epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
        if ent.exclusive:
            # EPOLL_CTL_MOD refuses EPOLLEXCLUSIVE (EINVAL): remove, then add.
            ev.events = mask | EPOLLEXCLUSIVE
            if ent.mask:
                epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
            rc = epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
            if rc < 0 and errno == EEXIST:
                epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
                rc = epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
            return rc
        rc = epoll_ctl(self.epfd, EPOLL_CTL_MOD if ent.mask else EPOLL_CTL_ADD, fd, &ev)
        if rc < 0 and errno == EEXIST:
            rc = epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
        elif rc < 0 and errno == ENOENT:
            rc = epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
        return rc

    def set_exclusive(self, int fd):
        """Wait for reading fd with an exclusive wake-up (EPOLLEXCLUSIVE) until forget_fd(fd):
        of the processes waiting for it, one wakes.  Where the hub polls, the ordinary way."""
        cdef _Fd ent
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        ent = self._entry(fd)
        if ent.exclusive:
            return
        ent.exclusive = True
        if ent.mask and self.backend == BACKEND_EPOLL and self.epfd >= 0:
            # Added the ordinary way: removed, so that the next wait adds it exclusively.
            self._ctl(fd, ent, 0)
            ent.mask = 0

    def forget_fd(self, int fd):
        """Drop fd from the interest set: call it before the descriptor is closed."""
        cdef _Fd ent = self.fds.pop(fd, None)
        cdef epoll_event ev
        if ent is None:
            return
        if (ent.mask or ent.handler is not None) and self.backend == BACKEND_EPOLL and \
                self.epfd >= 0:
            epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
        ent.mask = 0
        if ent.handler is not None:
            handler, ent.handler = ent.handler, None
            (<FdHandler>handler).on_forget(fd)
        # Whoever still waits on it learns at its next system call that it is gone.
        if ent.reader is not None:
            self.ready.append((ent.reader, None))
        if ent.writer is not None and ent.writer is not ent.reader:
            self.ready.append((ent.writer, None))

    # -- compiled handlers (FdHandler) ----------------------------------------------------------

    cdef int attach(self, int fd, FdHandler handler) except -1:
        cdef _Fd ent
        cdef epoll_event ev
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        ent = self._entry(fd)
        if ent.handler is not None or ent.reader is not None or ent.writer is not None:
            raise RuntimeError(f"fd {fd} is in use by another greenlet")
        if ent.exclusive:
            raise ValueError(f"fd {fd} is a shared listener")
        if self.backend == BACKEND_EPOLL:
            # Registered with no event: epoll still reports errors and hang-ups.
            ev.events = 0
            ev.data.u64 = 0
            ev.data.fd = fd
            if epoll_ctl(self.epfd, EPOLL_CTL_MOD if ent.mask else EPOLL_CTL_ADD, fd, &ev) < 0:
                if errno == EEXIST:
                    epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
                elif errno == ENOENT:
                    epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
                else:
                    return raise_errno(errno)
        ent.mask = 0
        ent.handler = handler
        return 0

    cdef int watch(self, int fd, uint32_t mask) except -1:
        cdef _Fd ent = self.fds.get(fd)
        cdef epoll_event ev
        if ent is None or ent.handler is None or ent.mask == mask:
            return 0
        if self.backend == BACKEND_EPOLL:
            ev.events = mask
            ev.data.u64 = 0
            ev.data.fd = fd
            if epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev) < 0:
                return raise_errno(errno)
        ent.mask = mask
        return 0

    cdef void detach(self, int fd) noexcept:
        cdef _Fd ent = self.fds.get(fd)
        cdef epoll_event ev
        if ent is None or ent.handler is None:
            return
        ent.handler = None
        ent.mask = 0
        if self.backend == BACKEND_EPOLL and self.epfd >= 0:
            epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
        if ent.reader is None and ent.writer is None:
            del self.fds[fd]

    cdef int park_until(self, double deadline) except -1:
        cdef _Timer t = None
        cur = greenlet_getcurrent()
        if cur is self.glet:
            raise RuntimeError("the hub itself cannot wait")
        if deadline >= 0:
            t = self._add_timer(deadline, cur, TIMED_OUT)
        try:
            value = greenlet_switch(self.glet, NULL)
        finally:
            if t is not None:
                self._cancel(t)
        return 1 if value is TIMED_OUT else 0

    cdef object current(self):
        return greenlet_getcurrent()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self):
        while True:
            try:
                self._run_once()
            except BaseException as exc:
                # A signal handler's exception (Ctrl-C) raised while the hub waited belongs to
                # the thread's own code.
                self._forward(exc)

    cdef int _forward(self, exc) except -1:
        if isinstance(exc, GreenletExit):
            return 0
        if greenlet_dead(self.root):
            raise exc
        greenlet_throw(self.root, exc)
        return 0

    cdef int _switch(self, glet, value) except -1:
        cdef double start = 0.0, held
        limit = self.block_warning
        if greenlet_dead(glet):
            return 0
        if limit is not None:
            start = _now()
        self.io_left = self.io_turn
        try:
            if type(value) is _Throw:
                greenlet_throw(glet, (<_Throw>value).exc)
            else:
                _switch_in(glet, value)
        except (GreenletExit, SystemExit):
            pass
        except KeyboardInterrupt as exc:
            self._forward(exc)
        except BaseException:
            print("Exception in a greenlet on the hub:", file=sys.stderr)
            import traceback

            traceback.print_exc()
        if self.abandoned:
            raise SystemExit(0)  # back in the child of fork(): see abandon()
        if limit is not None:
            held = _now() - start
            if held > limit:
                import warnings

                warnings.warn(describe_block(glet, held), HubBlockedWarning, stacklevel=1)
        return 0

    cdef int _run_once(self) except -1:
        cdef list batch
        cdef _Timer t
        cdef double now, timeout
        cdef Py_ssize_t i
        if self.abandoned:
            raise SystemExit(0)
        if self.calls:
            batch = self.calls
            self.calls = []
            for fn, args in batch:
                fn(*args)
        if self.timers:
            now = _now()
            while self.timers:
                t = <_Timer>self.timers[0]
                if t.active and t.when > now:
                    break
                _heap_pop(self.timers)
                if t.active:
                    t.active = False
                    self.ready.append((t.glet, t.value))
                    t.glet = None
                else:
                    self.cancelled -= 1
        if self.ready:
            batch = self.ready
            self.ready = []
            for i in range(len(batch)):
                glet, value = batch[i]
                self._switch(glet, value)
        if self.ready or self.calls:
            timeout = 0.0
        elif self.timers:
            timeout = (<_Timer>self.timers[0]).when - _now()
            if timeout < 0:
                timeout = 0.0
        else:
            timeout = -1.0
        if self.backend == BACKEND_EPOLL:
            self._epoll(_timeout_ms(timeout))
        else:
            self._poll(_timeout_ms(timeout))
        return 0

    cdef int _fire(self, int fd, uint32_t events) except -1:
        cdef _Fd ent = self.fds.get(fd)
        cdef uint32_t unwanted = 0, mask
        cdef epoll_event ev
        cdef bint readable = (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0
        cdef bint writable = (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0
        if ent is None:
            if self.backend == BACKEND_EPOLL:
                epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, &ev)
            return 0
        if ent.handler is not None:
            # Compiled code moves the bytes here, in the hub: no greenlet switch.
            return ent.handler.on_event(fd, events)
        if readable:
            if ent.reader is not None:
                self.ready.append((ent.reader, None))
                ent.reader = None
            else:
                unwanted |= EPOLLIN
        if writable:
            if ent.writer is not None:
                self.ready.append((ent.writer, None))
                ent.writer = None
            else:
                unwanted |= EPOLLOUT
        unwanted &= ent.mask
        if unwanted:
            # Nobody waits for that any more: stop hearing about it.
            mask = ent.mask & ~unwanted
            if self.backend == BACKEND_EPOLL and self._ctl(fd, ent, mask) < 0:
                mask = 0
            ent.mask = mask
        return 0

    cdef int _epoll(self, int ms) except -1:
        cdef epoll_event events[MAX_EVENTS]
        cdef int n, i, fd, err = 0
        cdef uint32_t ev
        if self.epfd < 0:
            raise ValueError("the hub is closed")
        # Under load something is usually ready already: look first without letting go of the
        # GIL (releasing and taking it back costs more than this system call), and wait
        # without it only when nothing is.
        n = epoll_wait(self.epfd, events, MAX_EVENTS, 0)
        if n == 0 and ms != 0:
            with nogil:
                n = epoll_wait(self.epfd, events, MAX_EVENTS, ms)
                if n < 0:
                    err = errno
        elif n < 0:
            err = errno
        if n < 0:
            return _wait_failed(err)
        for i in range(n):
            fd = events[i].data.fd
            ev = events[i].events
            if fd == self.wakeup.rfd:
                wakeup_drain(&self.wakeup)
                continue
            self._fire(fd, ev)
        return 0

    cdef int _poll(self, int ms) except -1:
        cdef Py_ssize_t count = 1, i
        cdef pollfd *p
        cdef int n, err = 0
        cdef _Fd ent
        cdef short rev
        if self.wakeup.rfd < 0:
            raise ValueError("the hub is closed")
        if len(self.fds) + 1 > self.npollfds:
            p = <pollfd *>PyMem_Realloc(self.pollfds, (len(self.fds) + 1) * sizeof(pollfd))
            if p == NULL:
                raise MemoryError()
            self.pollfds = p
            self.npollfds = len(self.fds) + 1
        self.pollfds[0].fd = self.wakeup.rfd
        self.pollfds[0].events = POLLIN
        self.pollfds[0].revents = 0
        for fd, obj in self.fds.items():
            ent = <_Fd>obj
            if ent.mask or ent.handler is not None:
                self.pollfds[count].fd = fd
                self.pollfds[count].events = (POLLIN if ent.mask & EPOLLIN else 0) | \
                    (POLLOUT if ent.mask & EPOLLOUT else 0)
                self.pollfds[count].revents = 0
                count += 1
        # As in _epoll(): a look with the GIL held first.
        n = poll(self.pollfds, <nfds_t>count, 0)
        if n == 0 and ms != 0:
            with nogil:
                n = poll(self.pollfds, <nfds_t>count, ms)
                if n < 0:
                    err = errno
        elif n < 0:
            err = errno
        if n < 0:
            return _wait_failed(err)
        if n == 0:
            return 0
        if self.pollfds[0].revents:
            wakeup_drain(&self.wakeup)
        for i in range(1, count):
            rev = self.pollfds[i].revents
            if rev:
                self._fire(self.pollfds[i].fd,
                           (EPOLLIN if rev & POLLIN else 0) | (EPOLLOUT if rev & POLLOUT else 0) |
                           (EPOLLERR if rev & (POLLERR | POLLNVAL) else 0) |
                           (EPOLLHUP if rev & POLLHUP else 0))
        return 0
