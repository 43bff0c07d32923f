# A wake-up descriptor: another thread writes to it so that a poll()/epoll_wait() returns.
# An eventfd where there is one, else a non-blocking, close-on-exec pipe.  Shared by the
# serve loop's poller and the greenlet hub.
cimport libc.errno
from libc.errno cimport errno
from libc.stdint cimport uint64_t

from cysocketserver.includes.syscalls cimport (
    CYS_HAVE_EVENTFD, EFD_CLOEXEC, EFD_NONBLOCK, F_GETFL, F_SETFD, F_SETFL, FD_CLOEXEC,
    O_NONBLOCK, close, eventfd, fcntl, pipe, read, write,
)


cdef struct Wakeup:
    int rfd     # what the poller watches (the eventfd itself on Linux), or -1
    int wfd     # what wakeup_signal() writes to, or -1


cdef inline int _nonblocking_cloexec(int fd) noexcept nogil:
    cdef int flags = fcntl(fd, F_GETFL)
    if flags < 0 or fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0:
        return -1
    return fcntl(fd, F_SETFD, FD_CLOEXEC)


cdef inline int wakeup_open(Wakeup *w) noexcept nogil:
    """0, or -1 with errno set and nothing left open."""
    cdef int fds[2]
    cdef int err
    w.rfd = w.wfd = -1
    if CYS_HAVE_EVENTFD:
        w.rfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
        if w.rfd < 0:
            return -1
        w.wfd = w.rfd
        return 0
    if pipe(fds) < 0:
        return -1
    if _nonblocking_cloexec(fds[0]) < 0 or _nonblocking_cloexec(fds[1]) < 0:
        err = errno
        close(fds[0])
        close(fds[1])
        libc.errno.errno = err
        return -1
    w.rfd = fds[0]
    w.wfd = fds[1]
    return 0


cdef inline void wakeup_signal(Wakeup *w) noexcept nogil:
    cdef uint64_t one = 1
    if w.wfd >= 0:
        # EAGAIN means a wake-up is pending already; nothing else can usefully be done.
        write(w.wfd, &one, sizeof(one) if w.wfd == w.rfd else 1)


cdef inline void wakeup_drain(Wakeup *w) noexcept nogil:
    cdef uint64_t drained
    while read(w.rfd, &drained, sizeof(drained)) > 0:
        pass


cdef inline void wakeup_close(Wakeup *w) noexcept nogil:
    if w.wfd >= 0 and w.wfd != w.rfd:
        close(w.wfd)
    if w.rfd >= 0:
        close(w.rfd)
    w.rfd = w.wfd = -1
