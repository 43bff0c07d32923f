# cython: freethreading_compatible = False
"""The poller behind the serve loop: epoll on Linux, poll() elsewhere, plus a wake-up descriptor.

shutdown() from another thread writes to the wake-up descriptor, so the loop returns within
one wake-up rather than after up to poll_interval as the stdlib's does.

A listener that several processes share may be watched exclusively (EPOLLEXCLUSIVE): of the
processes waiting for it, the kernel wakes one.  The flag is only accepted when a descriptor
is added, which is the only way the listener enters the set (watch() adds, unwatch() removes);
poll() has no such flag, and there the listener is watched the ordinary way.
"""
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
cimport libc.errno
from libc.errno cimport errno
from libc.stdint cimport uint64_t

from cysocketserver.includes.clock cimport timeout_ms as _timeout_ms
from cysocketserver.includes.syscalls cimport *
from cysocketserver.includes.wakeup cimport (
    wakeup_close, wakeup_drain, wakeup_open, wakeup_signal,
)

cdef enum:
    EPOLL = 1
    POLL = 2


cdef class Poller:

    cdef int _fail(self) except -1:
        """Release what __cinit__ got so far and raise OSError for the current errno."""
        cdef int err = errno
        self.close_fds()
        libc.errno.errno = err
        PyErr_SetFromErrno(OSError)
        return -1

    def __cinit__(self):
        self.epfd = -1
        self.wakeup.rfd = self.wakeup.wfd = -1
        self.listen_fd = -1
        self.watching = False
        self.exclusive = False
        cdef epoll_event ev
        if CYS_HAVE_EPOLL:
            self.backend = EPOLL
            self.epfd = epoll_create1(EPOLL_CLOEXEC)
            if self.epfd < 0:
                self._fail()
        else:
            self.backend = POLL
        if wakeup_open(&self.wakeup) < 0:
            self._fail()
        if self.backend == EPOLL:
            ev.events = EPOLLIN
            ev.data.u64 = WOKEN
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.wakeup.rfd, &ev) < 0:
                self._fail()

    def __dealloc__(self):
        self.close_fds()

    cdef int set_listener(self, int fd, bint exclusive) except -1:
        if fd == self.listen_fd and exclusive == self.exclusive:
            return 0
        self.unwatch()
        self.listen_fd = fd
        self.exclusive = exclusive
        return self.watch()

    cdef int watch(self) except -1:
        cdef epoll_event ev
        if self.watching or self.listen_fd < 0:
            return 0
        if self.backend == EPOLL:
            ev.events = EPOLLIN | (EPOLLEXCLUSIVE if self.exclusive else 0)
            ev.data.u64 = LISTENER_READY
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.listen_fd, &ev) < 0:
                PyErr_SetFromErrno(OSError)
                return -1
        self.watching = True
        return 0

    cdef int unwatch(self) except -1:
        cdef epoll_event ev
        if not self.watching:
            return 0
        self.watching = False
        if self.backend == EPOLL:
            # The listener may have been closed already, which removed it: not an error.
            epoll_ctl(self.epfd, EPOLL_CTL_DEL, self.listen_fd, &ev)
        return 0

    cdef int wait(self, double timeout) except -1:
        """Wait up to timeout seconds (negative: forever); return LISTENER_READY|WOKEN bits."""
        cdef epoll_event events[2]
        cdef pollfd fds[2]
        cdef int n, i, flags = 0, ms
        cdef nfds_t nfds
        if self.wakeup.rfd < 0:
            raise ValueError("the poller is closed")
        ms = _timeout_ms(timeout)
        while True:
            if self.backend == EPOLL:
                with nogil:
                    n = epoll_wait(self.epfd, events, 2, ms)
                for i in range(n):
                    flags |= <int>events[i].data.u64
            else:
                fds[0].fd = self.wakeup.rfd
                fds[0].events = POLLIN
                fds[0].revents = 0
                nfds = 1
                if self.watching:
                    fds[1].fd = self.listen_fd
                    fds[1].events = POLLIN
                    fds[1].revents = 0
                    nfds = 2
                with nogil:
                    n = poll(fds, nfds, ms)
                if n > 0:
                    if fds[0].revents:
                        flags |= WOKEN
                    if nfds == 2 and fds[1].revents:
                        flags |= LISTENER_READY
            if n >= 0:
                break
            if errno != EINTR:
                PyErr_SetFromErrno(OSError)
                return -1
            # A signal: run its Python handler (Ctrl-C raises here), then report a spurious
            # wake-up so the caller recomputes its deadline.
            PyErr_CheckSignals()
            break
        if flags & WOKEN:
            with nogil:
                wakeup_drain(&self.wakeup)
        return flags

    cdef int wake(self) noexcept nogil:
        wakeup_signal(&self.wakeup)
        return 0

    cdef int close_fds(self) noexcept:
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1
        wakeup_close(&self.wakeup)
        self.listen_fd = -1
        self.watching = False
        self.exclusive = False
        return 0
