# The poller: waits, with the GIL released, for the listening descriptor and a wake-up.
from cysocketserver.includes.wakeup cimport Wakeup

cdef enum:
    LISTENER_READY = 1
    WOKEN = 2

cdef class Poller:
    cdef int backend          # EPOLL or POLL
    cdef int epfd             # the epoll instance, or -1
    cdef Wakeup wakeup        # another thread's shutdown() writes here
    cdef int listen_fd        # the watched listener, or -1
    cdef bint watching        # whether the listener is in the interest set
    cdef bint exclusive       # the listener is added with EPOLLEXCLUSIVE

    cdef int set_listener(self, int fd, bint exclusive) except -1
    cdef int watch(self) except -1
    cdef int unwatch(self) except -1
    cdef int wait(self, double timeout) except -1
    cdef int wake(self) noexcept nogil
    cdef int close_fds(self) noexcept
    cdef int _fail(self) except -1
