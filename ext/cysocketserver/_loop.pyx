"""The compiled serve loop: serve_forever(), handle_request() and shutdown() for a server.

The loop calls the server's documented hooks in the stdlib's order.  Where a server leaves
get_request() (and fileno()) as this package defines them, the loop accepts or receives in
C, in batches, without giving up the GIL; any override is called instead.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc.errno cimport errno
from libc.string cimport memset

from cysocketserver._poller cimport Poller, LISTENER_READY, WOKEN
from cysocketserver.includes.clock cimport monotonic
from cysocketserver.includes.syscalls cimport *

import socket as _socket
import threading

__all__ = ["ServeLoop"]

# Requests taken per wake-up: enough to drain a burst, few enough to stay responsive.
DEF_BATCH = 16
# After accept() runs out of descriptors, leave the listener alone this long, doubling.
PAUSE_FIRST = 0.01
PAUSE_MAX = 0.5

cdef object _socket_class = _socket.socket
cdef tuple _RESOURCE_ERRNOS = (EMFILE, ENFILE, ENOBUFS, ENOMEM)

# How requests come off the listener.
cdef enum Intake:
    INTAKE_HOOKS = 0      # the server's own _handle_request_noblock/get_request
    INTAKE_ACCEPT = 1     # accept4() in C (stream sockets, IPv4/IPv6)
    INTAKE_RECVFROM = 2   # recvfrom() in C (datagram sockets, IPv4/IPv6)


cdef bint _is_default(object server, str name):
    """Whether the server's hook is still the one this package defines (marked in servers.py)."""
    method = getattr(server, name, None)
    func = getattr(method, "__func__", None)
    return getattr(func, "_cysocketserver_default", False) is True


cdef bint _is_noop(object server, str name):
    """Whether the server's hook is one of this package's that does nothing (servers.py)."""
    method = getattr(server, name, None)
    func = getattr(method, "__func__", None)
    return getattr(func, "_cysocketserver_noop", False) is True


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
    cdef Poller poller
    cdef bint stop_requested
    cdef object is_shut_down
    cdef object lock
    cdef double resume_at
    cdef double pause
    # The plan for the current serve_forever()/handle_request() call.
    cdef Intake intake
    cdef bint custom_noblock
    cdef bint call_verify
    cdef int batch                # requests per wake-up: 1 when service_actions must run between
    cdef bint inline_handler      # process_request/finish_request are ours: build the handler here
    cdef bint skip_shutdown       # shutdown_request/close_request are ours and do nothing
    cdef int listen_fd
    cdef int family, sock_type, proto
    cdef Py_ssize_t max_packet
    cdef char *packet_buf         # reused for every datagram; copied out at its real size
    cdef Py_ssize_t packet_buf_size

    def __cinit__(self):
        self.is_shut_down = threading.Event()
        self.lock = threading.Lock()
        self.pause = PAUSE_FIRST
        self.listen_fd = -1

    def __dealloc__(self):
        PyMem_Free(self.packet_buf)

    # -- the seam ---------------------------------------------------------------------------

    def serve_forever(self, server, poll_interval=0.5):
        cdef double interval = -1.0 if poll_interval is None else poll_interval
        cdef int flags, saved_fl = -1
        cdef Poller poller
        self.is_shut_down.clear()
        try:
            poller = self._attach(server)
            if self.intake == INTAKE_ACCEPT:
                # Non-blocking only while we serve, so a batch of accepts ends with EAGAIN.
                saved_fl = fcntl(self.listen_fd, F_GETFL)
                if saved_fl >= 0 and not (saved_fl & O_NONBLOCK):
                    fcntl(self.listen_fd, F_SETFL, saved_fl | O_NONBLOCK)
                else:
                    saved_fl = -1
            while not self.stop_requested:
                flags = poller.wait(self._wait_time(interval))
                if self.stop_requested:
                    break
                if flags & LISTENER_READY:
                    self._take_requests(server)
                server.service_actions()
        finally:
            if saved_fl >= 0 and server.fileno() == self.listen_fd:
                fcntl(self.listen_fd, F_SETFL, saved_fl)
            self.stop_requested = False
            self.is_shut_down.set()

    def shutdown(self):
        self.request_shutdown(True)
        self.is_shut_down.wait()

    @property
    def shutdown_requested(self):
        return self.stop_requested

    def request_shutdown(self, bint requested=True):
        """Ask the running serve_forever() to return, without waiting for it."""
        cdef Poller poller = self.poller
        self.stop_requested = requested
        if requested and poller is not None:
            with nogil:
                poller.wake()

    def handle_request(self, server):
        timeout = server.socket.gettimeout()
        if timeout is None:
            timeout = server.timeout
        elif server.timeout is not None:
            timeout = min(timeout, server.timeout)
        cdef double left = -1.0 if timeout is None else timeout
        cdef double deadline = 0.0 if timeout is None else monotonic() + left
        cdef Poller poller = self._attach(server)
        # One request through the hooks, exactly as the stdlib takes it.
        self.intake = INTAKE_HOOKS
        while True:
            if poller.wait(self._wait_time(left)) & LISTENER_READY:
                return server._handle_request_noblock()
            if timeout is not None:
                left = deadline - monotonic()
                if left < 0:
                    return server.handle_timeout()

    def handle_ready(self, server):
        """One request off the ready listener through get_request(), as the stdlib does."""
        try:
            request, client_address = server.get_request()
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRNOS:
                self._pause_listener()
            return
        self.pause = PAUSE_FIRST
        self._dispatch(server, request, client_address, True)

    def close(self):
        with self.lock:
            poller, self.poller = self.poller, None
        if poller is not None:
            (<Poller>poller).close_fds()

    # -- inside the loop --------------------------------------------------------------------

    cdef Poller _attach(self, server):
        """Make the poller watch the server's listener and decide how to take requests."""
        with self.lock:
            if self.poller is None:
                self.poller = Poller()
            poller = self.poller
        self.listen_fd = server.fileno()
        if self.listen_fd < 0:
            raise ValueError(f"Invalid file descriptor: {self.listen_fd}")
        (<Poller>poller).set_listener(self.listen_fd)
        self._plan(server)
        return poller

    cdef int _plan(self, server) except -1:
        cdef char *buf
        self.custom_noblock = not _is_default(server, "_handle_request_noblock")
        self.call_verify = not _is_default(server, "verify_request")
        # ForkingMixIn enforces max_children in service_actions(): then one request per wake-up,
        # as in the stdlib, so the hook runs between every two.
        self.batch = DEF_BATCH if _is_default(server, "service_actions") else 1
        self.inline_handler = (_is_default(server, "process_request")
                               and _is_default(server, "finish_request"))
        self.skip_shutdown = _is_noop(server, "shutdown_request") and _is_noop(server, "close_request")
        self.intake = INTAKE_HOOKS
        if self.custom_noblock or not _is_default(server, "get_request") \
                or not _is_default(server, "fileno"):
            return 0
        sock = server.socket
        if type(sock) is not _socket_class or sock.family not in (_socket.AF_INET, _socket.AF_INET6):
            return 0
        self.family = sock.family
        self.sock_type = sock.type
        self.proto = sock.proto
        if self.sock_type == _socket.SOCK_STREAM and CYS_HAVE_ACCEPT4:
            self.intake = INTAKE_ACCEPT
        elif self.sock_type == _socket.SOCK_DGRAM:
            self.max_packet = server.max_packet_size
            if self.max_packet > self.packet_buf_size:
                buf = <char *>PyMem_Realloc(self.packet_buf, self.max_packet)
                if buf == NULL:
                    raise MemoryError()
                self.packet_buf = buf
                self.packet_buf_size = self.max_packet
            self.intake = INTAKE_RECVFROM
        return 0

    cdef int _take_requests(self, server) except -1:
        if self.custom_noblock:
            server._handle_request_noblock()
        elif self.intake == INTAKE_ACCEPT:
            self._accept_batch(server)
        elif self.intake == INTAKE_RECVFROM:
            self._recvfrom_batch(server)
        else:
            self.handle_ready(server)
        return 0

    cdef int _accept_batch(self, server) except -1:
        cdef sockaddr_storage addr
        cdef socklen_t addrlen
        cdef int fd, err, taken
        for taken in range(self.batch):
            addrlen = sizeof(addr)
            fd = accept4(self.listen_fd, <sockaddr *>&addr, &addrlen, SOCK_CLOEXEC)
            if fd < 0:
                err = errno
                if err == EINTR:
                    PyErr_CheckSignals()
                    continue
                if err == ECONNABORTED or err == EPROTO:
                    continue  # that client gave up; the next one may be waiting
                if err == EMFILE or err == ENFILE or err == ENOBUFS or err == ENOMEM:
                    self._pause_listener()
                # EAGAIN: drained. Anything else the stdlib would swallow as well.
                return 0
            self.pause = PAUSE_FIRST
            request = _socket_class(self.family, self.sock_type, self.proto, fd)
            self._dispatch(server, request, _make_address(&addr, addrlen), self.call_verify)
            if self.stop_requested:
                break
        return 0

    cdef int _recvfrom_batch(self, server) except -1:
        cdef sockaddr_storage addr
        cdef socklen_t addrlen
        cdef ssize_t n
        cdef int taken, err
        sock = server.socket
        for taken in range(self.batch):
            addrlen = sizeof(addr)
            memset(&addr, 0, sizeof(addr))
            n = recvfrom(self.listen_fd, self.packet_buf, self.max_packet, MSG_DONTWAIT,
                         <sockaddr *>&addr, &addrlen)
            if n < 0:
                err = errno
                if err == EINTR:
                    PyErr_CheckSignals()
                    continue
                if err == ENOBUFS or err == ENOMEM:
                    self._pause_listener()
                return 0
            data = PyBytes_FromStringAndSize(self.packet_buf, n)
            self._dispatch(server, (data, sock), _make_address(&addr, addrlen), self.call_verify)
            if self.stop_requested:
                break
        return 0

    cdef int _dispatch(self, server, request, client_address, bint verify) except -1:
        if verify and not server.verify_request(request, client_address):
            server.shutdown_request(request)
            return 0
        try:
            if self.inline_handler:
                # BaseServer.process_request and finish_request, without their two frames.
                server.RequestHandlerClass(request, client_address, server)
                if not self.skip_shutdown:
                    server.shutdown_request(request)
            else:
                server.process_request(request, client_address)
        except Exception:
            server.handle_error(request, client_address)
            server.shutdown_request(request)
        except BaseException:
            server.shutdown_request(request)
            raise
        return 0

    cdef int _pause_listener(self) except -1:
        if self.poller is not None:
            self.poller.unwatch()
        self.resume_at = monotonic() + self.pause
        self.pause = min(self.pause * 2, PAUSE_MAX)
        return 0

    cdef double _wait_time(self, double timeout) except? -2.0:
        """The wait's timeout (negative: none), shortened to resume a paused listener on time."""
        cdef double left
        if self.resume_at == 0.0:
            return timeout
        left = self.resume_at - monotonic()
        if left <= 0:
            self.resume_at = 0.0
            self.poller.watch()
            return timeout
        return left if timeout < 0 else min(timeout, left)
