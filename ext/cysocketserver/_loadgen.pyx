"""The load client of ``python -m cysocketserver bench``: one process, many connections, in C.

``run()`` drives an echo server on a loopback address with one of four workloads and returns
what it measured:

``pingpong``
    N TCP connections; each sends a line of ``size`` bytes (the last one ``\\n``) and waits for
    the whole echo before it sends the next.
``connect``
    N concurrent loops of: connect, send a line, read its echo, close.  The client closes with
    a FIN followed by a reset (SO_LINGER 0) so that no TIME_WAIT is left on its side and the
    ephemeral ports do not run out; ``close="fin"`` or ``close="rst"`` choose otherwise.
``stream``
    N TCP connections, each sending lines back to back (at most ``window`` bytes unanswered)
    while it reads and checks the echo: a throughput test.
``udp``
    N UDP sockets, each sending a datagram of ``size`` bytes and waiting for it to come back
    (``timeout`` seconds at most, then the next one goes).
``http``
    N HTTP/1.1 keep-alive connections; each sends a fixed GET request (``request``) and reads
    the whole response before it sends the next.  The response must be ``200``, say its body's
    length with ``Content-Length`` (no chunked encoding), and its body must be ``expect`` when
    that is given.  A server that closes the connection costs an ``eof`` error and a reconnect.

Every echoed byte is compared with what was sent.  The loop runs with the GIL released on
epoll (poll() elsewhere), records the latency of every request in a log-linear histogram
(< 0.8% error), stops by itself after ``warmup + duration`` seconds or ``max_requests``
requests, then lets the requests under way finish (``drain`` seconds at most, not counted)
and closes everything.  Errors are counted, never raised: a refused or reset connection is
opened again after a short pause.  Only loopback addresses are accepted.

``reference_serve()`` is a small C echo server (one thread, epoll) to measure the client
itself against: whatever rate it reaches is the client's ceiling on this machine.
"""
cimport cython
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from cysocketserver.includes.syscalls cimport (
    CYS_HAVE_ACCEPT4, CYS_HAVE_EPOLL, EAGAIN, EINTR, EMFILE, ENFILE, EPOLL_CLOEXEC,
    EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT,
    EWOULDBLOCK, F_GETFL, F_SETFD, F_SETFL, FD_CLOEXEC, MSG_NOSIGNAL, O_NONBLOCK, POLLERR,
    POLLHUP, POLLIN, POLLNVAL, POLLOUT, SOCK_CLOEXEC, accept, accept4, close, epoll_create1,
    epoll_ctl, epoll_event, epoll_wait, fcntl, nfds_t, poll, pollfd, recv, recvfrom, send,
    sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t, AF_INET, AF_INET6,
)
from cysocketserver.includes.clock cimport monotonic_ns as mono_ns
from cysocketserver.includes.netclient cimport (
    ECONNREFUSED, ECONNRESET, EADDRINUSE, EADDRNOTAVAIL, EHOSTUNREACH, EINPROGRESS,
    ENETUNREACH, ENOTCONN, EPIPE, ETIMEDOUT, IPPROTO_TCP, SHUT_WR, SO_ERROR, SO_LINGER,
    SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET, TCP_NODELAY, connect, getsockopt, htons, linger,
    sendto, setsockopt, shutdown, socket,
)

import ipaddress as _ipaddress
import socket as _socket

__all__ = ["run", "reference_serve", "MODES", "ERROR_NAMES", "BACKEND"]

MODES = ("pingpong", "connect", "stream", "udp", "http")
# How the client waits for its sockets.
BACKEND = "epoll" if CYS_HAVE_EPOLL else "poll"

cdef enum:
    MODE_PINGPONG = 0
    MODE_CONNECT = 1
    MODE_STREAM = 2
    MODE_UDP = 3
    MODE_HTTP = 4

cdef enum:
    ST_OFF = 0          # no socket; opened again at conn.due
    ST_CONNECTING = 1   # connect() under way
    ST_SEND = 2         # sending the current request
    ST_RECV = 3         # waiting for (the rest of) its echo
    ST_STREAM = 4       # stream mode: sending and reading at once
    ST_DONE = 5         # finished for this run

cdef enum:
    CLOSE_FIN = 0       # plain close(): FIN, TIME_WAIT on our side
    CLOSE_FIN_RST = 1   # shutdown(SHUT_WR) then close() with SO_LINGER 0
    CLOSE_RST = 2       # close() with SO_LINGER 0 at once

# Error kinds, in the order of ERROR_NAMES.
cdef enum:
    E_REFUSED = 0
    E_ADDRNOTAVAIL = 1
    E_CONNECT = 2
    E_RESET = 3
    E_EOF = 4
    E_MISMATCH = 5
    E_TIMEOUT = 6
    E_SOCKET = 7
    E_OTHER = 8
    E_LATE = 9
    NERR = 10

ERROR_NAMES = ("refused", "addr_not_avail", "connect_failed", "reset", "eof", "mismatch",
               "timeout", "no_socket", "other", "late_reply")

cdef enum:
    HIST_SUB_BITS = 7
    HIST_LINEAR = 256               # values below are exact
    HIST_BUCKETS = 7424             # 256 + 55 * 128 + 128: every uint64 value fits
    BACKOFF_NS = 10000000           # pause before a failed connection is opened again
    SIGNAL_EVERY_NS = 50000000      # how often the loop takes the GIL to look for Ctrl-C
    RX_MIN = 65536
    HTTP_HEAD_MAX = 8192            # a response's status line and headers, at most
    REF_BUF = 65536
    REF_MAX_FDS = 65536

cdef const char *ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
cdef const char *HEXDIGITS = b"0123456789abcdef"

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


# -- latency histogram ------------------------------------------------------------------------

cdef struct Hist:
    uint64_t *counts
    uint64_t n
    uint64_t total
    uint64_t lo
    uint64_t hi


cdef inline int hist_index(uint64_t v) noexcept nogil:
    cdef int e, shift
    if v < HIST_LINEAR:
        return <int>v
    e = 63 - __builtin_clzll(v)
    shift = e - HIST_SUB_BITS
    return HIST_LINEAR + (shift - 1) * (1 << HIST_SUB_BITS) + <int>((v >> shift) - (1 << HIST_SUB_BITS))


cdef inline uint64_t hist_value(int index) noexcept nogil:
    """The middle of a bucket."""
    cdef int shift
    cdef uint64_t mantissa
    if index < HIST_LINEAR:
        return <uint64_t>index
    shift = (index - HIST_LINEAR) // (1 << HIST_SUB_BITS) + 1
    mantissa = <uint64_t>((index - HIST_LINEAR) % (1 << HIST_SUB_BITS) + (1 << HIST_SUB_BITS))
    return (mantissa << shift) + ((<uint64_t>1 << shift) >> 1)


cdef inline void hist_add(Hist *h, uint64_t v) noexcept nogil:
    h.counts[hist_index(v)] += 1
    h.n += 1
    h.total += v
    if v < h.lo:
        h.lo = v
    if v > h.hi:
        h.hi = v


cdef void hist_reset(Hist *h) noexcept nogil:
    memset(h.counts, 0, HIST_BUCKETS * sizeof(uint64_t))
    h.n = 0
    h.total = 0
    h.lo = <uint64_t>-1
    h.hi = 0


cdef uint64_t hist_percentile(Hist *h, double pct) noexcept nogil:
    cdef uint64_t rank, seen = 0, v
    cdef int i
    if h.n == 0:
        return 0
    rank = <uint64_t>(pct / 100.0 * <double>h.n + 0.999999999)
    if rank < 1:
        rank = 1
    if rank > h.n:
        rank = h.n
    for i in range(HIST_BUCKETS):
        seen += h.counts[i]
        if seen >= rank:
            v = hist_value(i)
            if v < h.lo:
                v = h.lo
            if v > h.hi:
                v = h.hi
            return v
    return h.hi


# -- readiness: epoll, or poll() where there is none -------------------------------------------

cdef struct Poller:
    int epfd            # -1: poll() backend
    int nslots
    int high            # poll(): slots at or above are all empty
    int *fds            # the descriptor in each slot, or -1
    uint32_t *want      # its interest, in EPOLL* bits
    epoll_event *evs
    pollfd *pfds
    int *pslot


cdef int poller_init(Poller *p, int nslots, bint use_epoll) noexcept nogil:
    cdef int i
    memset(p, 0, sizeof(Poller))
    p.epfd = -1
    p.nslots = nslots
    p.fds = <int *>malloc(nslots * sizeof(int))
    p.want = <uint32_t *>calloc(nslots, sizeof(uint32_t))
    p.evs = <epoll_event *>calloc(nslots, sizeof(epoll_event))
    if p.fds == NULL or p.want == NULL or p.evs == NULL:
        return -1
    for i in range(nslots):
        p.fds[i] = -1
    if CYS_HAVE_EPOLL and use_epoll:
        p.epfd = epoll_create1(EPOLL_CLOEXEC)
        if p.epfd < 0:
            return -1
    else:
        p.pfds = <pollfd *>calloc(nslots, sizeof(pollfd))
        p.pslot = <int *>calloc(nslots, sizeof(int))
        if p.pfds == NULL or p.pslot == NULL:
            return -1
    return 0


cdef void poller_free(Poller *p) noexcept nogil:
    if p.epfd >= 0:
        close(p.epfd)
        p.epfd = -1
    free(p.fds)
    free(p.want)
    free(p.evs)
    free(p.pfds)
    free(p.pslot)
    p.fds = NULL
    p.want = NULL
    p.evs = NULL
    p.pfds = NULL
    p.pslot = NULL


cdef int poller_set(Poller *p, int slot, int fd, uint32_t want) noexcept nogil:
    """Watch fd in slot for want (0: stop watching, the slot keeps the descriptor)."""
    cdef epoll_event ev
    cdef uint32_t old
    cdef int op
    if p.fds[slot] != fd:
        p.fds[slot] = fd
        p.want[slot] = 0
    old = p.want[slot]
    if old == want:
        return 0
    p.want[slot] = want
    if slot >= p.high:
        p.high = slot + 1
    if p.epfd < 0:
        return 0
    if old == 0:
        op = EPOLL_CTL_ADD
    elif want == 0:
        op = EPOLL_CTL_DEL
    else:
        op = EPOLL_CTL_MOD
    memset(&ev, 0, sizeof(ev))
    ev.events = want
    ev.data.u64 = <uint64_t>slot
    return epoll_ctl(p.epfd, op, fd, &ev)


cdef void poller_drop(Poller *p, int slot) noexcept nogil:
    """Forget the slot's descriptor; call before closing it."""
    if p.fds[slot] >= 0 and p.want[slot] != 0 and p.epfd >= 0:
        epoll_ctl(p.epfd, EPOLL_CTL_DEL, p.fds[slot], NULL)
    p.fds[slot] = -1
    p.want[slot] = 0


cdef int poller_wait(Poller *p, int timeout_ms, int *slots, uint32_t *events) noexcept nogil:
    """Ready slots and their events (EPOLL* bits) into slots/events; -1 and errno on failure."""
    cdef int n, i, k = 0
    cdef short re
    cdef uint32_t e
    if p.epfd >= 0:
        n = epoll_wait(p.epfd, p.evs, p.nslots, timeout_ms)
        for i in range(n):
            slots[i] = <int>p.evs[i].data.u64
            events[i] = p.evs[i].events
        return n
    for i in range(p.high):
        if p.fds[i] >= 0 and p.want[i] != 0:
            p.pfds[k].fd = p.fds[i]
            p.pfds[k].events = (POLLIN if p.want[i] & EPOLLIN else 0) | \
                (POLLOUT if p.want[i] & EPOLLOUT else 0)
            p.pfds[k].revents = 0
            p.pslot[k] = i
            k += 1
    n = poll(p.pfds, <nfds_t>k, timeout_ms)
    if n <= 0:
        return n
    n = 0
    for i in range(k):
        re = p.pfds[i].revents
        if re == 0:
            continue
        e = 0
        if re & POLLIN:
            e |= EPOLLIN
        if re & POLLOUT:
            e |= EPOLLOUT
        if re & (POLLERR | POLLNVAL):
            e |= EPOLLERR
        if re & POLLHUP:
            e |= EPOLLHUP
        slots[n] = p.pslot[i]
        events[n] = e
        n += 1
    return n


cdef inline int set_nonblocking(int fd) noexcept nogil:
    cdef int fl = fcntl(fd, F_GETFL)
    if fl < 0:
        return -1
    fcntl(fd, F_SETFD, FD_CLOEXEC)
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK)


cdef inline bint would_block(int err) noexcept nogil:
    return err == EAGAIN or err == EWOULDBLOCK


# -- Ctrl-C while the GIL is released ----------------------------------------------------------

cdef list _pending = []


cdef int signals_pending() noexcept with gil:
    """Run Python's signal handlers; keep what they raise for run() to re-raise."""
    try:
        PyErr_CheckSignals()
    except BaseException as exc:
        _pending.append(exc)
        return 1
    return 0


# -- the client --------------------------------------------------------------------------------

cdef struct Conn:
    int fd
    int state
    uint64_t sent       # request modes: bytes of the current request sent; stream: in all
    uint64_t recvd      # request modes: bytes of its echo checked; stream: in all
    uint64_t seq        # requests started in this slot
    uint64_t t0         # when the current request started (connect: before socket())
    uint64_t due        # ST_OFF: when to open again; udp: when the reply is late
    char *tx            # the current request (size bytes)
    uint64_t *ts        # stream: when line k started going out, at ts[k & ts_mask]
    char *head          # http: the response's head as it arrives (HTTP_HEAD_MAX bytes)
    uint64_t head_len   # http: bytes in head; once the head is complete, its length
    uint64_t body_len   # http: the body's length (its Content-Length), once the head is in
    bint in_body        # http: the head is complete, the body is arriving


cdef struct Run:
    int mode
    int nconn
    uint64_t size
    int family
    int close_how
    sockaddr_storage addr
    socklen_t addrlen
    Poller poller
    Conn *conns
    int *rslots
    uint32_t *revents
    char *rx
    uint64_t rxcap
    char *ring          # stream: ring_len bytes of whole lines, sent over and over
    uint64_t ring_len
    uint64_t window
    uint64_t ts_mask
    const char *req     # http: the request every connection sends
    uint64_t req_len
    const char *body    # http: the body every response must have (NULL: any)
    uint64_t body_len
    uint64_t t_begin
    uint64_t t_measure  # end of the warm-up
    uint64_t t_end      # end of the measured time
    uint64_t t_stop     # when the measured time really ended
    uint64_t t_hard     # end of the drain
    uint64_t drain_ns
    uint64_t timeout_ns
    uint64_t max_requests
    bint measuring
    bint draining
    int active          # slots not ST_DONE
    int off             # slots in ST_OFF
    uint64_t requests
    uint64_t tx_bytes
    uint64_t rx_bytes
    uint64_t connects
    uint64_t errors[10]
    Hist hist


cdef inline bint is_stream(Run *r) noexcept nogil:
    return r.mode == MODE_STREAM


cdef void make_request(Run *r, int i) noexcept nogil:
    """The next request of slot i: its number in hex up front, when there is room."""
    cdef Conn *c = &r.conns[i]
    cdef uint64_t tag
    cdef int k
    c.seq += 1
    if r.size >= 18 and c.tx != NULL:
        tag = (<uint64_t>i << 40) ^ c.seq
        for k in range(16):
            c.tx[15 - k] = HEXDIGITS[(tag >> (4 * k)) & 15]
    c.sent = 0
    c.recvd = 0
    c.head_len = 0
    c.body_len = 0
    c.in_body = False


cdef int classify(int err, bint connecting) noexcept nogil:
    if err == ECONNREFUSED:
        return E_REFUSED
    if err == EADDRNOTAVAIL or err == EADDRINUSE:
        return E_ADDRNOTAVAIL
    if err == ECONNRESET or err == EPIPE or err == ENOTCONN:
        return E_RESET
    if err == ETIMEDOUT or err == EHOSTUNREACH or err == ENETUNREACH or connecting:
        return E_CONNECT
    return E_OTHER


cdef void close_fd(Run *r, int i, int how) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef linger lg
    if c.fd < 0:
        return
    poller_drop(&r.poller, i)
    if r.mode != MODE_UDP and how != CLOSE_FIN:
        lg.l_onoff = 1
        lg.l_linger = 0
        setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg))
        if how == CLOSE_FIN_RST:
            # The server reads its EOF (no reset error in its handler); the reset that
            # close() sends then spares us the TIME_WAIT, unless its FIN beat us to it.
            shutdown(c.fd, SHUT_WR)
    close(c.fd)
    c.fd = -1


cdef void finish_slot(Run *r, int i, int how) noexcept nogil:
    close_fd(r, i, how)
    if r.conns[i].state != ST_DONE:
        r.conns[i].state = ST_DONE
        r.active -= 1


cdef void fail(Run *r, int i, int kind, uint64_t now) noexcept nogil:
    """Count the error, drop the socket, and open another after a pause."""
    cdef Conn *c = &r.conns[i]
    r.errors[kind] += 1
    close_fd(r, i, CLOSE_RST)
    if r.draining:
        finish_slot(r, i, CLOSE_RST)
        return
    c.state = ST_OFF
    c.due = now + BACKOFF_NS
    r.off += 1


cdef inline void record(Run *r, uint64_t latency) noexcept nogil:
    hist_add(&r.hist, latency)
    r.requests += 1


cdef void open_slot(Run *r, int i, uint64_t now) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef int fd, one = 1, err
    make_request(r, i)
    c.t0 = now
    fd = socket(r.family, SOCK_DGRAM if r.mode == MODE_UDP else SOCK_STREAM, 0)
    if fd < 0:
        fail(r, i, E_SOCKET, now)
        return
    c.fd = fd
    set_nonblocking(fd)
    if r.mode != MODE_UDP:
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
    if connect(fd, <sockaddr *>&r.addr, r.addrlen) == 0:
        connected(r, i, now)
        return
    err = errno
    if err == EINPROGRESS or err == EINTR:
        c.state = ST_CONNECTING
        poller_set(&r.poller, i, fd, EPOLLOUT)
        return
    fail(r, i, classify(err, True), now)


cdef void connected(Run *r, int i, uint64_t now) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    r.connects += 1
    if r.draining:
        finish_slot(r, i, CLOSE_FIN)
        return
    if r.mode == MODE_UDP:
        poller_set(&r.poller, i, c.fd, EPOLLIN)
        udp_send(r, i, now)
    elif is_stream(r):
        c.state = ST_STREAM
        c.sent = 0
        c.recvd = 0
        poller_set(&r.poller, i, c.fd, EPOLLIN)
        stream_write(r, i, now)
    else:
        if r.mode == MODE_PINGPONG or r.mode == MODE_HTTP:
            c.t0 = now          # the connection's set-up is not part of its first request
        c.state = ST_SEND
        poller_set(&r.poller, i, c.fd, EPOLLIN)
        tcp_send(r, i, now)


cdef enum:
    # After a recv() that returned n <= 0 (see recv_trouble):
    RECV_RETRY = 1        # interrupted by a signal: call it again
    RECV_WAIT = 0         # nothing there yet: wait for the poller
    RECV_FAILED = -1      # end of file or an error: the slot has been failed


cdef int recv_trouble(Run *r, int i, ssize_t n) noexcept nogil:
    """What to do after recv() on slot i returned n <= 0 (0: end of file)."""
    cdef int err
    if n == 0:
        fail(r, i, E_EOF, mono_ns())
        return RECV_FAILED
    err = errno
    if err == EINTR:
        return RECV_RETRY
    if would_block(err):
        return RECV_WAIT
    fail(r, i, classify(err, False), mono_ns())
    return RECV_FAILED


# request/response over TCP (pingpong, connect)

cdef void tcp_send(Run *r, int i, uint64_t now) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef ssize_t n
    cdef int err
    cdef const char *out = r.req if r.mode == MODE_HTTP else c.tx
    cdef uint64_t total = r.req_len if r.mode == MODE_HTTP else r.size
    while c.sent < total:
        n = send(c.fd, out + c.sent, total - c.sent, MSG_NOSIGNAL)
        if n > 0:
            c.sent += <uint64_t>n
            continue
        err = errno
        if n < 0 and err == EINTR:
            continue
        if n < 0 and would_block(err):
            poller_set(&r.poller, i, c.fd, EPOLLIN | EPOLLOUT)
            return
        fail(r, i, classify(err, False), now)
        return
    c.state = ST_RECV
    poller_set(&r.poller, i, c.fd, EPOLLIN)


cdef void tcp_recv(Run *r, int i) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef ssize_t n
    while True:
        n = recv(c.fd, r.rx, r.size - c.recvd, 0)
        if n > 0:
            if memcmp(r.rx, c.tx + c.recvd, <size_t>n) != 0:
                fail(r, i, E_MISMATCH, mono_ns())
                return
            c.recvd += <uint64_t>n
            if c.recvd == r.size:
                tcp_done(r, i, r.size, r.size)
                return
            continue
        if recv_trouble(r, i, n) != RECV_RETRY:
            return


cdef void tcp_done(Run *r, int i, uint64_t sent, uint64_t received) noexcept nogil:
    """The whole reply is in: count it and start the next request."""
    cdef Conn *c = &r.conns[i]
    cdef uint64_t now = mono_ns()
    if r.measuring and not r.draining:
        record(r, now - c.t0)
        r.tx_bytes += sent
        r.rx_bytes += received
    if r.mode == MODE_CONNECT:
        close_fd(r, i, r.close_how)
        if r.draining:
            finish_slot(r, i, r.close_how)
        else:
            open_slot(r, i, now)
        return
    if r.draining:
        finish_slot(r, i, CLOSE_FIN)
        return
    make_request(r, i)
    c.t0 = now
    c.state = ST_SEND
    tcp_send(r, i, now)


# http

cdef inline char lower(char ch) noexcept nogil:
    return ch + 32 if 65 <= ch <= 90 else ch          # A-Z


cdef uint64_t head_end(const char *head, uint64_t start, uint64_t length) noexcept nogil:
    """Where the blank line that ends the head ends, looking from start on; 0: not there yet."""
    cdef uint64_t k
    for k in range(start, length - 3 if length >= 4 else 0):
        if head[k] == 13 and head[k + 1] == 10 and head[k + 2] == 13 and head[k + 3] == 10:
            return k + 4
    return 0


cdef bint has_name(const char *line, uint64_t room, const char *name, uint64_t size) noexcept nogil:
    """Whether the header line starts with name (lower case, colon included), in any case."""
    cdef uint64_t j
    if room < size:
        return False
    for j in range(size):
        if lower(line[j]) != name[j]:
            return False
    return True


cdef long long parse_head(const char *head, uint64_t length) noexcept nogil:
    """The body's length that a complete head announces; -1 if not a 200 with Content-Length.

    length includes the blank line that ends the head.
    """
    cdef uint64_t k = 0, line
    cdef long long value = -1
    # "HTTP/1.x 200 "
    if length < 13 or memcmp(head, b"HTTP/1.", 7) != 0 or memcmp(head + 8, b" 200", 4) != 0:
        return -1
    while True:
        # The next line starts after this one's CRLF.
        while k + 1 < length and not (head[k] == 13 and head[k + 1] == 10):
            k += 1
        line = k + 2
        if line + 2 >= length:
            return value                    # the blank line: the head is over
        if has_name(head + line, length - line, b"transfer-encoding:", 18):
            return -1                       # chunked: not what this client reads
        k = line
        if has_name(head + line, length - line, b"content-length:", 15):
            if value >= 0:
                return -1                   # twice: refuse rather than guess
            k = line + 15
            while k < length and (head[k] == 32 or head[k] == 9):
                k += 1
            if k >= length or not (48 <= head[k] <= 57):
                return -1
            value = 0
            while k < length and 48 <= head[k] <= 57:
                value = value * 10 + (head[k] - 48)
                if value > (<long long>1 << 40):
                    return -1
                k += 1


cdef void http_recv(Run *r, int i) noexcept nogil:
    """Read (the rest of) a response: its head into c.head, then its body, checked."""
    cdef Conn *c = &r.conns[i]
    cdef ssize_t n
    cdef uint64_t want, start, end, extra
    cdef long long length
    while True:
        if c.in_body:
            want = c.body_len - c.recvd
            if want > r.rxcap:
                want = r.rxcap
            n = recv(c.fd, r.rx, want, 0)
            if n > 0:
                if r.body != NULL and memcmp(r.rx, r.body + c.recvd, <size_t>n) != 0:
                    fail(r, i, E_MISMATCH, mono_ns())
                    return
                c.recvd += <uint64_t>n
                if c.recvd == c.body_len:
                    tcp_done(r, i, r.req_len, c.head_len + c.body_len)
                    return
                continue
        else:
            n = recv(c.fd, c.head + c.head_len, HTTP_HEAD_MAX - c.head_len, 0)
            if n > 0:
                start = c.head_len - 3 if c.head_len >= 3 else 0
                c.head_len += <uint64_t>n
                end = head_end(c.head, start, c.head_len)
                if end == 0:
                    if c.head_len == HTTP_HEAD_MAX:
                        fail(r, i, E_MISMATCH, mono_ns())
                        return
                    continue
                length = parse_head(c.head, end)
                extra = c.head_len - end
                if length < 0 or (r.body != NULL and <uint64_t>length != r.body_len) \
                        or extra > <uint64_t>length \
                        or (r.body != NULL and extra and memcmp(c.head + end, r.body, extra) != 0):
                    fail(r, i, E_MISMATCH, mono_ns())
                    return
                c.in_body = True
                c.head_len = end
                c.body_len = <uint64_t>length
                c.recvd = extra
                if c.recvd == c.body_len:
                    tcp_done(r, i, r.req_len, c.head_len + c.body_len)
                    return
                continue
        if recv_trouble(r, i, n) != RECV_RETRY:
            return


cdef inline void reply_recv(Run *r, int i) noexcept nogil:
    if r.mode == MODE_HTTP:
        http_recv(r, i)
    else:
        tcp_recv(r, i)


# stream

cdef void stream_write(Run *r, int i, uint64_t now) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef uint64_t inflight, off, chunk, k, last
    cdef ssize_t n
    cdef int err
    while not r.draining:
        inflight = c.sent - c.recvd
        if inflight >= r.window:
            poller_set(&r.poller, i, c.fd, EPOLLIN)
            return
        off = c.sent % r.ring_len
        chunk = r.window - inflight
        if chunk > r.ring_len - off:
            chunk = r.ring_len - off
        n = send(c.fd, r.ring + off, chunk, MSG_NOSIGNAL)
        if n > 0:
            # Lines that start in [sent, sent + n) leave now.
            k = (c.sent + r.size - 1) // r.size
            last = (c.sent + <uint64_t>n - 1) // r.size
            while k <= last:
                c.ts[k & r.ts_mask] = now
                k += 1
            c.sent += <uint64_t>n
            if r.measuring:
                r.tx_bytes += <uint64_t>n
            continue
        err = errno
        if n < 0 and err == EINTR:
            continue
        if n < 0 and would_block(err):
            poller_set(&r.poller, i, c.fd, EPOLLIN | EPOLLOUT)
            return
        fail(r, i, classify(err, False), now)
        return
    poller_set(&r.poller, i, c.fd, EPOLLIN)


cdef bint ring_matches(Run *r, const char *data, uint64_t at, uint64_t n) noexcept nogil:
    cdef uint64_t off = at % r.ring_len, part
    while n > 0:
        part = r.ring_len - off
        if part > n:
            part = n
        if memcmp(data, r.ring + off, <size_t>part) != 0:
            return False
        data += part
        n -= part
        off = 0
    return True


cdef void stream_read(Run *r, int i) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef ssize_t n
    cdef int trouble
    cdef uint64_t now = 0, k, end
    while True:
        n = recv(c.fd, r.rx, r.rxcap, 0)
        if n > 0:
            now = mono_ns()
            if c.recvd + <uint64_t>n > c.sent or not ring_matches(r, r.rx, c.recvd, <uint64_t>n):
                fail(r, i, E_MISMATCH, now)
                return
            # Lines whose last byte is in [recvd, recvd + n) are complete.
            k = c.recvd // r.size
            end = (c.recvd + <uint64_t>n) // r.size
            if r.measuring and not r.draining:
                while k < end:
                    record(r, now - c.ts[k & r.ts_mask])
                    k += 1
                r.rx_bytes += <uint64_t>n
            c.recvd += <uint64_t>n
            continue
        trouble = recv_trouble(r, i, n)
        if trouble == RECV_WAIT:
            break
        if trouble == RECV_FAILED:
            return
    if r.draining:
        if c.recvd == c.sent:
            finish_slot(r, i, CLOSE_FIN)
        return
    stream_write(r, i, now if now else mono_ns())


# udp

cdef void udp_send(Run *r, int i, uint64_t now) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef ssize_t n
    cdef int err
    c.state = ST_RECV
    c.t0 = now
    c.due = now + r.timeout_ns
    while True:
        n = send(c.fd, c.tx, r.size, 0)
        if n >= 0:
            return
        err = errno
        if err == EINTR:
            continue
        if err == ECONNREFUSED:
            fail(r, i, E_REFUSED, now)
        # Otherwise (a full buffer) the datagram is lost: the timeout will count it.
        return


cdef void udp_recv(Run *r, int i) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef ssize_t n
    cdef uint64_t now
    while c.fd >= 0:
        n = recv(c.fd, r.rx, r.rxcap, 0)
        if n < 0:  # (an empty datagram is n == 0: a reply like any other)
            if recv_trouble(r, i, n) != RECV_RETRY:
                return
            continue
        if c.state == ST_RECV and <uint64_t>n == r.size and memcmp(r.rx, c.tx, r.size) == 0:
            now = mono_ns()
            if r.measuring and not r.draining:
                record(r, now - c.t0)
                r.tx_bytes += r.size
                r.rx_bytes += r.size
            if r.draining:
                finish_slot(r, i, CLOSE_FIN)
                return
            make_request(r, i)
            udp_send(r, i, now)
            # Its echo cannot be here yet: no recv() bound to fail, epoll will say when.
            return
        if (r.size >= 18 and <uint64_t>n == r.size
                and memcmp(r.rx + 16, c.tx + 16, r.size - 16) == 0):
            r.errors[E_LATE] += 1      # the echo of a request already given up on
        else:
            r.errors[E_MISMATCH] += 1


cdef void on_event(Run *r, int i, uint32_t ev) noexcept nogil:
    cdef Conn *c = &r.conns[i]
    cdef int err = 0
    cdef socklen_t len_ = sizeof(err)
    if c.fd < 0:
        return
    if c.state == ST_CONNECTING:
        if getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len_) < 0:
            err = errno
        if err != 0:
            fail(r, i, classify(err, True), mono_ns())
        elif ev & (EPOLLOUT | EPOLLERR | EPOLLHUP):
            connected(r, i, mono_ns())
        return
    if r.mode == MODE_UDP:
        if ev & (EPOLLIN | EPOLLERR):
            udp_recv(r, i)
        return
    if c.state == ST_STREAM:
        if ev & (EPOLLIN | EPOLLERR | EPOLLHUP):
            stream_read(r, i)
        elif ev & EPOLLOUT:
            stream_write(r, i, mono_ns())
        return
    if c.state == ST_SEND:
        if ev & (EPOLLOUT | EPOLLERR | EPOLLHUP):
            tcp_send(r, i, mono_ns())
        elif ev & EPOLLIN:
            # Data before the request is out: the server is not an echo server.
            reply_recv(r, i)
    elif c.state == ST_RECV:
        if ev & (EPOLLIN | EPOLLERR | EPOLLHUP):
            reply_recv(r, i)


cdef void scan_timers(Run *r, uint64_t now) noexcept nogil:
    cdef int i
    cdef Conn *c
    for i in range(r.nconn):
        c = &r.conns[i]
        if c.state == ST_OFF:
            if r.draining:
                r.off -= 1
                finish_slot(r, i, CLOSE_RST)
            elif c.due <= now:
                r.off -= 1
                open_slot(r, i, now)
        elif r.mode == MODE_UDP and c.state == ST_RECV and c.due <= now and c.fd >= 0:
            r.errors[E_TIMEOUT] += 1
            if r.draining:
                finish_slot(r, i, CLOSE_FIN)
            else:
                make_request(r, i)
                udp_send(r, i, now)


cdef void begin_drain(Run *r, uint64_t now) noexcept nogil:
    cdef int i
    cdef Conn *c
    r.draining = True
    r.t_stop = now
    r.t_hard = now + r.drain_ns
    for i in range(r.nconn):
        c = &r.conns[i]
        if c.state == ST_OFF:
            r.off -= 1
            finish_slot(r, i, CLOSE_RST)
        elif c.state == ST_STREAM:
            if c.recvd == c.sent:
                finish_slot(r, i, CLOSE_FIN)
            else:
                poller_set(&r.poller, i, c.fd, EPOLLIN)


cdef inline uint64_t earlier(uint64_t a, uint64_t b) noexcept nogil:
    return a if a < b else b


cdef int run_loop(Run *r) noexcept nogil:
    """0: done; 1: interrupted by a signal handler's exception; -1: the poller failed."""
    cdef uint64_t now, wake, next_signals, next_scan
    cdef int n, k, timeout_ms
    now = mono_ns()
    next_signals = now + SIGNAL_EVERY_NS
    next_scan = now
    for k in range(r.nconn):
        open_slot(r, k, now)
    while True:
        now = mono_ns()
        if not r.measuring and now >= r.t_measure:
            r.measuring = True
            r.t_measure = now
            r.requests = 0
            r.tx_bytes = 0
            r.rx_bytes = 0
            hist_reset(&r.hist)
        if not r.draining and (now >= r.t_end or
                               (r.max_requests and r.requests >= r.max_requests)):
            if not r.measuring:
                r.measuring = True
                r.t_measure = now
            begin_drain(r, now)
        if r.draining and (r.active <= 0 or now >= r.t_hard):
            return 0
        if now >= next_signals:
            if signals_pending():
                if not r.draining:
                    r.t_stop = now
                return 1
            next_signals = now + SIGNAL_EVERY_NS
        if now >= next_scan:
            scan_timers(r, now)
            next_scan = now + (1000000 if (r.off or r.mode == MODE_UDP or r.draining) else 20000000)
        wake = earlier(next_signals, next_scan)
        wake = earlier(wake, r.t_hard if r.draining else r.t_end)
        if not r.measuring:
            wake = earlier(wake, r.t_measure)
        now = mono_ns()
        timeout_ms = 0 if wake <= now else <int>((wake - now + 999999) // 1000000)
        n = poller_wait(&r.poller, timeout_ms, r.rslots, r.revents)
        if n < 0:
            if errno == EINTR:
                continue
            return -1
        for k in range(n):
            on_event(r, r.rslots[k], r.revents[k])


cdef void free_run(Run *r) noexcept nogil:
    cdef int i
    if r.conns != NULL:
        for i in range(r.nconn):
            if r.conns[i].fd >= 0:
                close_fd(r, i, CLOSE_RST)
            free(r.conns[i].tx)
            free(r.conns[i].ts)
            free(r.conns[i].head)
        free(r.conns)
        r.conns = NULL
    poller_free(&r.poller)
    free(r.rslots)
    free(r.revents)
    free(r.rx)
    free(r.ring)
    free(r.hist.counts)
    r.rslots = NULL
    r.revents = NULL
    r.rx = NULL
    r.ring = NULL
    r.hist.counts = NULL


cdef int resolve(Run *r, str host, int port) except -1:
    """Fill r.addr from a loopback host; anything else is refused."""
    cdef sockaddr_in *v4
    cdef sockaddr_in6 *v6
    cdef bytes packed
    if host in ("localhost", ""):
        host = "127.0.0.1"
    try:
        ip = _ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"the load client takes a numeric loopback address, not {host!r}")
    if not ip.is_loopback:
        raise ValueError(f"the load client only targets loopback addresses, not {host}")
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    memset(&r.addr, 0, sizeof(r.addr))
    if ip.version == 4:
        packed = _socket.inet_pton(_socket.AF_INET, str(ip))
        v4 = <sockaddr_in *>&r.addr
        v4.sin_family = AF_INET
        v4.sin_port = htons(<unsigned short>port)
        memcpy(&v4.sin_addr, <char *>packed, 4)
        r.family = AF_INET
        r.addrlen = sizeof(sockaddr_in)
    else:
        packed = _socket.inet_pton(_socket.AF_INET6, str(ip))
        v6 = <sockaddr_in6 *>&r.addr
        v6.sin6_family = AF_INET6
        v6.sin6_port = htons(<unsigned short>port)
        memcpy(&v6.sin6_addr, <char *>packed, 16)
        r.family = AF_INET6
        r.addrlen = sizeof(sockaddr_in6)
    return 0


def run(str mode, str host, int port, *, int connections=16, Py_ssize_t size=64,
        double duration=2.0, double warmup=0.0, long long max_requests=0,
        double timeout=1.0, Py_ssize_t window=65536, double drain=1.0, str close="fin-rst",
        str backend="auto", bytes request=None, bytes expect=None):
    """Drive the echo server at host:port (loopback only) and return what was measured.

    mode: one of MODES.  connections: concurrent connections (or sockets, or connect loops).
    size: bytes per request, the last one a newline.  duration: measured seconds, after
    warmup seconds that are not counted.  max_requests: stop after that many (0: no limit).
    timeout: udp only, seconds before a datagram counts as lost.  window: stream only, bytes
    sent and not yet echoed per connection.  drain: seconds at most to let the requests under
    way finish once the time is up.  close: how connect mode closes ("fin-rst", "fin", "rst").
    backend: "auto" (epoll where there is one) or "poll".  http only: request, the bytes each
    request sends (default ``GET / HTTP/1.1`` with a Host header), and expect, the body every
    response must have (default: any); size is not used.

    The result is a dict: requests, rate (per second), mb_per_s (echoed bytes; http: response
    bytes, head included), latency_us
    percentiles (p50, p90, p99, p99.9, min, mean, max), errors by kind, and the settings.
    """
    cdef Run r
    cdef int i, rc = 0
    cdef uint64_t lines, tsn = 16
    cdef double elapsed
    cdef Conn *c
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if connections < 1 or connections > 60000:
        raise ValueError("connections must be between 1 and 60000")
    if size < 1 or size > 16 * 1024 * 1024:
        raise ValueError("size must be between 1 byte and 16 MiB")
    if mode == "udp" and size > 65507:
        raise ValueError("a UDP datagram holds at most 65507 bytes")
    if not 0 < duration <= 86400 or not 0 <= warmup <= 3600 or not 0 <= drain <= 60:
        raise ValueError("duration must be in (0, 86400], warmup in [0, 3600], drain in [0, 60]")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if window < 1:
        raise ValueError("window must be positive")
    if max_requests < 0:
        raise ValueError("max_requests must not be negative")
    if close not in ("fin-rst", "fin", "rst"):
        raise ValueError("close must be 'fin-rst', 'fin' or 'rst'")
    if backend not in ("auto", "poll"):
        raise ValueError("backend must be 'auto' or 'poll'")
    if mode != "http" and (request is not None or expect is not None):
        raise ValueError("request and expect are for the http mode")
    if mode == "http":
        if request is None:
            request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("ascii")
        if not request:
            raise ValueError("request must not be empty")

    memset(&r, 0, sizeof(r))
    r.mode = MODES.index(mode)
    r.nconn = connections
    r.size = <uint64_t>size
    r.close_how = {"fin": CLOSE_FIN, "fin-rst": CLOSE_FIN_RST, "rst": CLOSE_RST}[close]
    r.timeout_ns = <uint64_t>(timeout * 1e9)
    r.drain_ns = <uint64_t>(drain * 1e9)
    r.max_requests = <uint64_t>max_requests
    r.window = <uint64_t>window
    r.active = connections
    if mode == "http":
        r.req = request
        r.req_len = <uint64_t>len(request)
        if expect is not None:
            r.body = expect
            r.body_len = <uint64_t>len(expect)
    resolve(&r, host, port)
    try:
        if poller_init(&r.poller, connections, backend == "auto") < 0:
            raise OSError(errno, "cannot set up the poller")
        r.conns = <Conn *>calloc(connections, sizeof(Conn))
        r.rslots = <int *>calloc(connections, sizeof(int))
        r.revents = <uint32_t *>calloc(connections, sizeof(uint32_t))
        r.rxcap = r.size if r.size > RX_MIN else RX_MIN
        r.rx = <char *>malloc(r.rxcap)
        r.hist.counts = <uint64_t *>malloc(HIST_BUCKETS * sizeof(uint64_t))
        if r.conns == NULL or r.rslots == NULL or r.revents == NULL or r.rx == NULL \
                or r.hist.counts == NULL:
            raise MemoryError()
        hist_reset(&r.hist)
        if mode == "stream":
            # Enough whole lines to make large sends; each line differs from its neighbours.
            lines = (262144 + r.size - 1) // r.size
            if lines < 61:
                lines = 61
            r.ring_len = lines * r.size
            r.ring = <char *>malloc(r.ring_len)
            if r.ring == NULL:
                raise MemoryError()
            for i in range(<int>lines):
                fill_line(r.ring + <uint64_t>i * r.size, r.size, i * 7)
            tsn = 16
            while tsn < r.window // r.size + 4:
                tsn *= 2
            r.ts_mask = tsn - 1
        for i in range(connections):
            c = &r.conns[i]
            c.fd = -1
            c.state = ST_OFF
            if mode == "stream":
                c.ts = <uint64_t *>calloc(tsn, sizeof(uint64_t))
                if c.ts == NULL:
                    raise MemoryError()
            elif mode == "http":
                c.head = <char *>malloc(HTTP_HEAD_MAX)
                if c.head == NULL:
                    raise MemoryError()
            else:
                c.tx = <char *>malloc(r.size)
                if c.tx == NULL:
                    raise MemoryError()
                fill_line(c.tx, r.size, i * 11)
        r.t_begin = mono_ns()
        r.t_measure = r.t_begin + <uint64_t>(warmup * 1e9)
        r.t_end = r.t_measure + <uint64_t>(duration * 1e9)
        with nogil:
            rc = run_loop(&r)
        if rc < 0:
            raise OSError(errno, "the poller failed")
        inflight = r.active if r.active > 0 else 0
        if not r.t_stop:
            r.t_stop = mono_ns()
        elapsed = (<double>(r.t_stop - r.t_measure)) / 1e9 if r.t_stop > r.t_measure else 0.0
        result = {
            "mode": mode,
            "host": host,
            "port": port,
            "connections": connections,
            "size": size,
            "duration": elapsed,
            "requests": r.requests,
            "rate": r.requests / elapsed if elapsed > 0 else 0.0,
            "bytes_sent": r.tx_bytes,
            "bytes_received": r.rx_bytes,
            "mb_per_s": r.rx_bytes / elapsed / 1e6 if elapsed > 0 else 0.0,
            "connects": r.connects,
            "errors": {ERROR_NAMES[i]: r.errors[i] for i in range(NERR)},
            "error_total": sum(r.errors[i] for i in range(NERR)),
            "unfinished_at_stop": inflight,
            "latency_us": latency_summary(&r.hist),
            "backend": "epoll" if r.poller.epfd >= 0 else "poll",
        }
    finally:
        free_run(&r)
    if rc == 1:
        exc = _pending.pop() if _pending else KeyboardInterrupt()
        _pending.clear()
        raise exc
    return result


cdef void fill_line(char *line, uint64_t size, int shift) noexcept nogil:
    cdef uint64_t j
    for j in range(size - 1):
        line[j] = ALPHABET[(j + <uint64_t>shift) % 62]
    line[size - 1] = b'\n'


cdef dict latency_summary(Hist *h):
    if h.n == 0:
        return {"samples": 0}
    return {
        "samples": h.n,
        "min": h.lo / 1e3,
        "mean": h.total / <double>h.n / 1e3,
        "p50": hist_percentile(h, 50.0) / 1e3,
        "p90": hist_percentile(h, 90.0) / 1e3,
        "p99": hist_percentile(h, 99.0) / 1e3,
        "p99.9": hist_percentile(h, 99.9) / 1e3,
        "max": h.hi / 1e3,
    }


# -- the reference echo server ----------------------------------------------------------------

cdef struct RefConn:
    char *buf
    uint64_t pending
    uint64_t off


cdef void ref_close(Poller *p, RefConn *conns, int fd) noexcept nogil:
    poller_drop(p, fd)
    close(fd)
    free(conns[fd].buf)
    conns[fd].buf = NULL
    conns[fd].pending = 0


cdef void ref_flush(Poller *p, RefConn *conns, int fd) noexcept nogil:
    cdef RefConn *c = &conns[fd]
    cdef ssize_t n
    while c.pending:
        n = send(fd, c.buf + c.off, c.pending, MSG_NOSIGNAL)
        if n > 0:
            c.off += <uint64_t>n
            c.pending -= <uint64_t>n
            continue
        if n < 0 and errno == EINTR:
            continue
        if n < 0 and would_block(errno):
            poller_set(p, fd, fd, EPOLLOUT)
            return
        ref_close(p, conns, fd)
        return
    poller_set(p, fd, fd, EPOLLIN)


cdef void ref_read(Poller *p, RefConn *conns, int fd) noexcept nogil:
    cdef RefConn *c = &conns[fd]
    cdef ssize_t n
    cdef int rounds = 0
    if c.buf == NULL:
        c.buf = <char *>malloc(REF_BUF)
        if c.buf == NULL:
            ref_close(p, conns, fd)
            return
    while rounds < 8 and c.pending == 0:
        rounds += 1
        n = recv(fd, c.buf, REF_BUF, 0)
        if n > 0:
            c.off = 0
            c.pending = <uint64_t>n
            ref_flush(p, conns, fd)
            if p.fds[fd] < 0:
                return
            continue
        if n < 0 and errno == EINTR:
            continue
        if n < 0 and would_block(errno):
            return
        ref_close(p, conns, fd)
        return


cdef int ref_loop(int lfd, bint udp, uint64_t until) noexcept nogil:
    cdef Poller p
    cdef RefConn *conns = NULL
    cdef int *slots = NULL
    cdef uint32_t *events = NULL
    cdef int n, k, fd, cfd, one = 1, rc = 0
    cdef uint64_t now, next_signals
    cdef char *dgram = NULL
    cdef sockaddr_storage peer
    cdef socklen_t peerlen
    cdef ssize_t got
    if poller_init(&p, REF_MAX_FDS, True) < 0:
        poller_free(&p)
        return -1
    conns = <RefConn *>calloc(REF_MAX_FDS, sizeof(RefConn))
    slots = <int *>calloc(REF_MAX_FDS, sizeof(int))
    events = <uint32_t *>calloc(REF_MAX_FDS, sizeof(uint32_t))
    dgram = <char *>malloc(REF_BUF)
    if conns == NULL or slots == NULL or events == NULL or dgram == NULL or lfd >= REF_MAX_FDS:
        rc = -1
    else:
        set_nonblocking(lfd)
        poller_set(&p, lfd, lfd, EPOLLIN)
        next_signals = 0
        while True:
            now = mono_ns()
            if now >= until:
                break
            if now >= next_signals:
                if signals_pending():
                    rc = 1
                    break
                next_signals = now + SIGNAL_EVERY_NS
            n = poller_wait(&p, 100, slots, events)
            if n < 0:
                if errno == EINTR:
                    continue
                rc = -1
                break
            for k in range(n):
                fd = slots[k]
                if fd == lfd and udp:
                    while True:
                        peerlen = sizeof(peer)
                        got = recvfrom(lfd, dgram, REF_BUF, 0, <sockaddr *>&peer, &peerlen)
                        if got < 0:
                            break
                        sendto(lfd, dgram, <size_t>got, 0, <sockaddr *>&peer, peerlen)
                elif fd == lfd:
                    while True:
                        if CYS_HAVE_ACCEPT4:
                            cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)
                        else:
                            cfd = accept(lfd, NULL, NULL)
                        if cfd < 0:
                            break
                        if cfd >= REF_MAX_FDS:
                            close(cfd)
                            continue
                        set_nonblocking(cfd)
                        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
                        poller_set(&p, cfd, cfd, EPOLLIN)
                elif conns[fd].pending:
                    ref_flush(&p, conns, fd)
                else:
                    ref_read(&p, conns, fd)
    if conns != NULL:
        for fd in range(REF_MAX_FDS):
            if p.fds != NULL and p.fds[fd] >= 0 and fd != lfd:
                ref_close(&p, conns, fd)
    poller_free(&p)
    free(conns)
    free(slots)
    free(events)
    free(dgram)
    return rc


def reference_serve(int fd, bint udp=False, double max_seconds=600.0):
    """Echo on the bound (TCP: listening) socket fd, in C, until max_seconds have passed.

    A yardstick for the load client: what it reaches against this server is its own ceiling.
    Ctrl-C (or any signal handler's exception) ends it early.
    """
    cdef int rc
    cdef uint64_t until = mono_ns() + <uint64_t>(max_seconds * 1e9)
    with nogil:
        rc = ref_loop(fd, udp, until)
    if rc < 0:
        raise OSError(errno, "the reference server failed")
    if rc == 1:
        exc = _pending.pop() if _pending else KeyboardInterrupt()
        _pending.clear()
        raise exc
