# The greenlet hub: epoll (or poll()), timers, a ready queue, descriptor waiters, a wake-up fd.
from cysocketserver.includes.wakeup cimport Wakeup
from libc.stdint cimport uint32_t, uint64_t

from cysocketserver.includes.syscalls cimport pollfd


cdef class FdHandler:
    # Compiled code that the hub's event dispatch runs itself, with no greenlet switch: while
    # attached to a descriptor (Hub.attach), every event the kernel reports for it goes to
    # on_event() (epoll bits: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP).  forget_fd() of an attached
    # descriptor calls on_forget().  Both run inside the hub's loop: they must not wait, switch
    # or raise (an exception would reach the thread's main greenlet).
    cdef int on_event(self, int fd, uint32_t events) except -1
    cdef int on_forget(self, int fd) except -1


cdef class _Fd:
    cdef object reader          # the greenlet waiting to read, or None
    cdef object writer          # the greenlet waiting to write, or None
    cdef FdHandler handler      # attached compiled code (see FdHandler), or None
    cdef uint32_t mask          # what the kernel (or the poll set) is asked to report
    cdef bint exclusive         # added with EPOLLEXCLUSIVE: never modified, removed and re-added


cdef class _Timer:
    cdef double when            # CLOCK_MONOTONIC seconds
    cdef uint64_t seq           # ties broken in the order of creation
    cdef object glet
    cdef object value           # switched into glet when the timer fires
    cdef bint active


cdef class _Throw:
    cdef object exc             # a ready-queue value: throw this into the greenlet


cdef class Hub:
    cdef readonly object glet           # the greenlet the loop runs in
    cdef readonly object root           # the thread's main greenlet
    cdef readonly object thread_ident
    cdef public object block_warning    # seconds, or None
    cdef int backend
    cdef int epfd
    cdef Wakeup wakeup       # call_threadsafe() from other threads writes here
    cdef dict fds                       # fd -> _Fd
    cdef list timers                    # heap of _Timer
    cdef Py_ssize_t cancelled
    cdef uint64_t seq
    cdef list ready                     # [(greenlet, value)]
    cdef list calls                     # [(fn, args)] from any thread
    cdef pollfd *pollfds
    cdef Py_ssize_t npollfds
    # Fairness (see _hubcommon.DEFAULT_IO_BUDGET): the operations a greenlet may complete in
    # one turn without waiting (the io_budget property; INT_MAX for no limit), and what is left
    # of the running greenlet's turn.
    cdef int io_turn
    cdef int io_left
    # Set by abandon() in the child of fork(): the hub's state is the parent's, never run again.
    cdef bint abandoned

    cdef int give_way(self) except -1
    # For FdHandler code: attach() keeps fd in the interest set (even with no event asked, so
    # that errors and hang-ups are heard) and sends its events to handler; watch() asks for
    # exactly ``mask``; detach() removes fd from the set and forgets it.
    cdef int attach(self, int fd, FdHandler handler) except -1
    cdef int watch(self, int fd, uint32_t mask) except -1
    cdef void detach(self, int fd) noexcept
    # Park the running greenlet until someone wakes it (1: the deadline passed; < 0: none).
    cdef int park_until(self, double deadline) except -1
    # The running greenlet (a new reference).
    cdef object current(self)
    # wait_fd() without a Python-level call: 1 if the deadline passed, 0 if ready (or woken).
    cdef int wait(self, int fd, int events, double deadline) except -1

    cdef void _close_fds(self) noexcept
    cdef _Timer _add_timer(self, double when, object glet, object value)
    cdef int _cancel(self, _Timer t) except -1
    cdef _Fd _entry(self, int fd)
    cdef bint _interest(self, int fd, _Fd ent) except -1
    cdef int _ctl(self, int fd, _Fd ent, uint32_t mask) noexcept
    cdef int _forward(self, exc) except -1
    cdef int _switch(self, glet, value) except -1
    cdef int _run_once(self) except -1
    cdef int _fire(self, int fd, uint32_t events) except -1
    cdef int _epoll(self, int ms) except -1
    cdef int _poll(self, int ms) except -1


cdef inline int hub_io_done(Hub hub) except -1:
    """An I/O operation of the running greenlet completed without waiting: count it against its
    turn, and give way to the others when the turn is spent.  (The compiled streams call this
    on their own descriptors, the hub's io_done() is the same for Python code.)"""
    hub.io_left -= 1
    if hub.io_left <= 0:
        return hub.give_way()
    return 0
