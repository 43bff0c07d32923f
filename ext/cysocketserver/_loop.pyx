# cython: freethreading_compatible = False
"""The compiled serve loop (``core.seam.ServeLoop``): mechanism only.

It waits on the listener and a wake-up (its own poller, with the GIL released, or the
greenlet servers' hub), accepts or receives requests in batches in C without giving up the
GIL, and hands each to ``plan.admit``.  Which hooks to call, how many requests per wake-up,
the back-off after running out of descriptors: all of it comes from the plan
(``core.plan``); the pure-Python twin is ``_pure_loop``.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno
from libc.string cimport memset

from cysocketserver._poller cimport Poller, LISTENER_READY, WOKEN
from cysocketserver.includes.clock cimport monotonic
from cysocketserver.includes.syscalls cimport *
from cysocketserver.includes.netclient cimport IPPROTO_TCP, TCP_NODELAY, setsockopt

import threading

from cysocketserver._loopcommon import INTAKE_ACCEPT, INTAKE_RECVFROM

__all__ = ["ServeLoop"]

cdef int _INTAKE_ACCEPT = INTAKE_ACCEPT
cdef int _INTAKE_RECVFROM = INTAKE_RECVFROM


cdef object _make_address(sockaddr_storage *addr, socklen_t addrlen):
    """The client address as the socket module gives it, for IPv4 and IPv6."""
    cdef char text[64]
    cdef sockaddr_in *v4
    cdef sockaddr_in6 *v6
    if addr.ss_family == AF_INET:
        v4 = <sockaddr_in *>addr
        inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(v4.sin_port))
    if addr.ss_family == AF_INET6:
        v6 = <sockaddr_in6 *>addr
        inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo),
                v6.sin6_scope_id)
    return None


@cython.final
cdef class ServeLoop:
    cdef Poller poller            # our own waiter, called in C; or None
    cdef object waiter            # any other waiter (the greenlet servers' hub), called in Python
    cdef bint stop_requested
    cdef bint gated               # the concurrency model can take nothing now
    cdef bint backing_off
    cdef double resume_at         # end of the back-off pause (0: none)
    cdef object is_shut_down
    cdef object lock
    cdef char *packet_buf         # reused for every datagram; copied out at its real size
    cdef Py_ssize_t packet_buf_size

    def __cinit__(self, waiter=None):
        self.is_shut_down = threading.Event()
        self.lock = threading.Lock()
        if waiter is not None:
            self.waiter = waiter

    def __dealloc__(self):
        PyMem_Free(self.packet_buf)

    # -- the seam ---------------------------------------------------------------------------

    def serve_forever(self, plan, poll_interval=0.5):
        cdef double interval = -1.0 if poll_interval is None else poll_interval
        cdef int flags
        self.is_shut_down.clear()
        try:
            self._attach(plan)
            after_wait = plan.after_wait
            while not self.stop_requested:
                flags = self._wait(self._wait_time(interval, True))
                if self.stop_requested:
                    break
                if flags & LISTENER_READY and not self.gated and self.resume_at == 0.0:
                    self._take(plan)
                if after_wait is not None:
                    after_wait()
        finally:
            self.stop_requested = False
            self.is_shut_down.set()

    def handle_request(self, plan, timeout):
        cdef double left = -1.0 if timeout is None else timeout
        cdef double deadline = 0.0 if timeout is None else monotonic() + left
        self._attach(plan)
        while True:
            if self._wait(self._wait_time(left, False)) & LISTENER_READY and self.resume_at == 0.0:
                return plan.take_one()
            if timeout is not None:
                left = deadline - monotonic()
                if left < 0:
                    return plan.handle_timeout()

    def shutdown(self):
        self.request_shutdown(True)
        self.is_shut_down.wait()

    @property
    def shutdown_requested(self):
        return self.stop_requested

    def request_shutdown(self, bint requested=True):
        self.stop_requested = requested
        if requested:
            self._wake()

    def pause_accepting(self):
        self.gated = True

    def resume_accepting(self):
        if self.gated:
            self.gated = False
            self._wake()

    def back_off(self, double seconds):
        self.resume_at = monotonic() + seconds
        self.backing_off = True

    def close(self):
        with self.lock:
            poller, self.poller = self.poller, None
            waiter, self.waiter = self.waiter, None
        if poller is not None:
            (<Poller>poller).close_fds()
        if waiter is not None:
            waiter.close()

    # -- waiting ------------------------------------------------------------------------------

    cdef int _attach(self, plan) except -1:
        cdef char *buf
        cdef Py_ssize_t size
        with self.lock:
            if self.poller is None and self.waiter is None:
                self.poller = Poller()
        if self.poller is not None:
            self.poller.set_listener(plan.fd, plan.exclusive)
        else:
            self.waiter.set_listener(plan.fd, plan.exclusive)
        if plan.intake == _INTAKE_RECVFROM:
            size = plan.max_packet
            if size > self.packet_buf_size:
                buf = <char *>PyMem_Realloc(self.packet_buf, size)
                if buf == NULL:
                    raise MemoryError()
                self.packet_buf = buf
                self.packet_buf_size = size
        return 0

    cdef int _wait(self, double timeout) except -1:
        if self.poller is not None:
            return self.poller.wait(timeout)
        return self.waiter.wait(None if timeout < 0 else timeout)

    cdef int _watch(self, bint on) except -1:
        if self.poller is not None:
            if on:
                self.poller.watch()
            else:
                self.poller.unwatch()
        elif on:
            self.waiter.watch()
        else:
            self.waiter.unwatch()
        return 0

    cdef int _wake(self) except -1:
        cdef Poller poller = self.poller
        if poller is not None:
            with nogil:
                poller.wake()
        elif self.waiter is not None:
            self.waiter.wake()
        return 0

    cdef double _wait_time(self, double timeout, bint gated) except? -2.0:
        """Watch the listener or not, and shorten the wait (negative: none) to end a back-off
        pause on time."""
        cdef double left
        if self.resume_at != 0.0:
            left = self.resume_at - monotonic()
            if left > 0:
                self._watch(False)
                return left if timeout < 0 else min(timeout, left)
            self.resume_at = 0.0
        self._watch(not (gated and self.gated))
        return timeout

    # -- taking requests --------------------------------------------------------------------

    cdef int _take(self, plan) except -1:
        # Woken by one party (a free thread) while the connection limit still says no: take
        # nothing, and stop watching until there is room.
        room = plan.room
        if room is not None and not self._still_taking(room):
            return 0
        intake = plan.intake
        if intake == _INTAKE_ACCEPT:
            self._accept_batch(plan)
        elif intake == _INTAKE_RECVFROM:
            self._recvfrom_batch(plan)
        else:
            plan.take_one()
            can_take = plan.can_take
            if can_take is not None:
                self._still_taking(can_take)
        return 0

    cdef int _accept_batch(self, plan) except -1:
        cdef sockaddr_storage addr
        cdef socklen_t addrlen
        cdef int fd, err, taken, one = 1
        cdef int listen_fd = plan.fd
        cdef bint nodelay = plan.nodelay
        cdef int batch = plan.batch
        cdef int family = plan.family, sock_type = plan.type, proto = plan.proto
        admit = plan.admit
        can_take = plan.can_take
        make = plan.request_class
        for taken in range(batch):
            addrlen = sizeof(addr)
            fd = accept4(listen_fd, <sockaddr *>&addr, &addrlen, SOCK_CLOEXEC)
            if fd < 0:
                err = errno
                if err == EINTR:
                    PyErr_CheckSignals()
                    continue
                if err == EAGAIN or err == EWOULDBLOCK:
                    return 0  # drained
                pause = plan.intake_error(err)
                if err == ECONNABORTED or err == EPROTO:
                    continue  # that client gave up; the next one may be waiting
                if pause:
                    self.back_off(pause)
                # Anything else the stdlib would swallow as well.
                return 0
            if self.backing_off:
                self.backing_off = False
                plan.backoff.reset()
            if nodelay:
                # As TCPServer.get_request does; a refusal (a client already gone) is ignored.
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            admit(make(family, sock_type, proto, fd), _make_address(&addr, addrlen))
            if self.stop_requested:
                break
            if can_take is not None and not self._still_taking(can_take):
                break
        return 0

    cdef int _recvfrom_batch(self, plan) except -1:
        cdef sockaddr_storage addr
        cdef socklen_t addrlen
        cdef ssize_t n
        cdef int taken, err
        cdef int listen_fd = plan.fd
        cdef int batch = plan.batch
        cdef Py_ssize_t size = plan.max_packet
        admit = plan.admit
        sock = plan.listener
        for taken in range(batch):
            addrlen = sizeof(addr)
            memset(&addr, 0, sizeof(addr))
            n = recvfrom(listen_fd, self.packet_buf, size, MSG_DONTWAIT, <sockaddr *>&addr, &addrlen)
            if n < 0:
                err = errno
                if err == EINTR:
                    PyErr_CheckSignals()
                    continue
                if err == EAGAIN or err == EWOULDBLOCK:
                    return 0
                pause = plan.intake_error(err)
                if pause:
                    self.back_off(pause)
                return 0
            data = PyBytes_FromStringAndSize(self.packet_buf, n)
            admit((data, sock), _make_address(&addr, addrlen))
            if self.stop_requested:
                break
        return 0

    cdef bint _still_taking(self, can_take) except -1:
        """After a request: if the model can take no more, stop watching the listener until it
        calls resume_accepting() (asked again after pausing, so a thread freed in between is
        not missed)."""
        if can_take():
            return True
        self.gated = True
        if can_take():
            self.gated = False
            return True
        return False
