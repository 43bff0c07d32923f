# cython: freethreading_compatible = False
"""The relay, compiled: copies both directions between two connected stream sockets until
both have ended (cysocketserver.relaying is its public front; _pure_relay its twin).

One engine, two ways of waiting:

- on a greenlet hub (``relay_on_hub``), both descriptors are attached to the hub
  (``_hub.FdHandler``): the hub's event dispatch calls ``_HubRelay.on_event``, which moves the
  bytes right there, and the calling greenlet stays parked until the end.  No greenlet switch
  per chunk; at most ``TURN_BYTES`` per direction per readiness event, so that a busy relay
  leaves the hub to the others (epoll is level-triggered: what is left is reported again at
  the hub's next turn);
- in a plain thread (``relay_in_thread``), poll() on both descriptors with the GIL released.

Each direction copies through a buffer (recv/send with MSG_DONTWAIT, so the sockets' blocking
mode is never touched), and on Linux moves bulk through splice(2) and a pipe from a small
pool: in ``SPLICE_AUTO`` a direction switches once one of its reads fills the buffer
(bulk, where the kernel-side move pays); splice needs the descriptors non-blocking, so their
flags are set then and given back at the end.  EINVAL/ENOSYS from splice (a descriptor it
cannot take) puts the direction back on the buffer.  End of stream on one side is
shutdown(SHUT_WR) on the other; an error or a reset on either ends both.
"""
cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.errno cimport errno
from libc.stdint cimport uint32_t

from cysocketserver._hub cimport FdHandler, Hub
from cysocketserver.includes.clock cimport monotonic as _now, timeout_ms as _timeout_ms
from cysocketserver.includes.errors cimport raise_errno
from cysocketserver.includes.syscalls cimport (
    CYS_HAVE_SPLICE, EAGAIN, EINTR, EINVAL, ENOSYS, ENOTSOCK, EPOLLERR, EPOLLHUP, EPOLLIN,
    EPOLLOUT, EWOULDBLOCK, F_GETFL, F_SETFL, F_SETPIPE_SZ, MSG_DONTWAIT, MSG_NOSIGNAL,
    O_CLOEXEC, O_NONBLOCK, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, SHUT_WR,
    SPLICE_F_MOVE, SPLICE_F_NONBLOCK, close, fcntl, pipe2, poll, pollfd, read, recv, send,
    shutdown, splice, write,
)

__all__ = ["BUFFER_SIZE", "SPLICE_ALWAYS", "SPLICE_AUTO", "SPLICE_NEVER", "TURN_BYTES",
           "relay_in_thread", "relay_on_hub"]

cdef enum:
    # What a direction waits for.
    WAIT_READ = 0       # its source to be readable
    WAIT_WRITE = 1      # its destination to be writable
    WAIT_DONE = 2       # nothing: ended (end of stream passed on)
    # How a direction moves its bytes.
    MOVE_COPY = 0
    MOVE_SPLICE = 1

    # The splice policy (cysocketserver.relaying.SPLICE names them).
    _SPLICE_NEVER = 0
    _SPLICE_AUTO = 1
    _SPLICE_ALWAYS = 2

SPLICE_NEVER = _SPLICE_NEVER
SPLICE_AUTO = _SPLICE_AUTO
SPLICE_ALWAYS = _SPLICE_ALWAYS

cdef enum:
    # One direction's buffer; a read that fills it marks a bulk flow.
    _BUFFER_SIZE = 65536
    # The most one direction moves per readiness event on a hub (fairness, see the docstring).
    _TURN_BYTES = 262144
    # The pipes of the splice path: their size (F_SETPIPE_SZ; the default is 64 KiB), and how
    # many emptied ones (and buffers) are kept for the next relays.
    PIPE_SIZE = 262144
    POOL_SIZE = 16

BUFFER_SIZE = _BUFFER_SIZE
TURN_BYTES = _TURN_BYTES


cdef struct Side:
    int fd
    bint plain          # not a socket (ENOTSOCK): read()/write() on a non-blocking descriptor
    int saved_flags     # F_GETFL before the relay made it non-blocking; -1: untouched


cdef struct Direction:
    Side *src
    Side *dst
    char *buf
    size_t start, end   # the buffer's bytes not sent yet
    int pipe_r, pipe_w  # the splice path's pipe, -1 without
    size_t in_pipe      # bytes in the pipe not sent yet
    int move            # MOVE_COPY, MOVE_SPLICE
    int wait            # WAIT_READ, WAIT_WRITE, WAIT_DONE
    bint eof            # its source has ended; shutdown(SHUT_WR) once the rest is sent
    bint want_splice    # a read filled the buffer: switch to splice (a pipe is needed)
    bint no_splice      # splice refused these descriptors
    unsigned long long count    # bytes delivered


cdef struct Relay:
    Side side[2]
    Direction dir[2]    # [0]: side 0 -> side 1, [1]: side 1 -> side 0
    int splice_mode
    bint failed         # an error or reset ended both directions
    bint moved          # bytes moved since the caller last looked (idle timeout)


# -- buffers and pipes, kept between relays (the GIL guards them) -------------------------------

cdef char *_buffers[POOL_SIZE * 2]
cdef int _nbuffers = 0
cdef int _pipes[POOL_SIZE * 2]
cdef int _npipes = 0


cdef char *_take_buffer() except NULL:
    global _nbuffers
    cdef char *buf
    if _nbuffers:
        _nbuffers -= 1
        return _buffers[_nbuffers]
    buf = <char *>PyMem_Malloc(_BUFFER_SIZE)
    if buf == NULL:
        raise MemoryError()
    return buf


cdef void _give_buffer(char *buf) noexcept:
    global _nbuffers
    if buf == NULL:
        return
    if _nbuffers < POOL_SIZE * 2:
        _buffers[_nbuffers] = buf
        _nbuffers += 1
    else:
        PyMem_Free(buf)


cdef bint _take_pipe(Direction *d) noexcept:
    """A pipe for d's splice path (from the pool, or new); False where none can be had."""
    global _npipes
    cdef int fds[2]
    if _npipes:
        _npipes -= 2
        d.pipe_r = _pipes[_npipes]
        d.pipe_w = _pipes[_npipes + 1]
        return True
    if pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0:
        return False
    # A larger pipe moves more per splice(); refused past the user's limit: keep the default.
    fcntl(fds[1], F_SETPIPE_SZ, <int>PIPE_SIZE)
    d.pipe_r = fds[0]
    d.pipe_w = fds[1]
    return True


cdef void _give_pipe(Direction *d) noexcept:
    global _npipes
    if d.pipe_r < 0:
        return
    if d.in_pipe == 0 and _npipes < POOL_SIZE * 2:
        _pipes[_npipes] = d.pipe_r
        _pipes[_npipes + 1] = d.pipe_w
        _npipes += 2
    else:
        close(d.pipe_r)
        close(d.pipe_w)
    d.pipe_r = d.pipe_w = -1
    d.in_pipe = 0


# -- the engine ---------------------------------------------------------------------------------

cdef bint _nonblocking(Side *s) noexcept nogil:
    """Make s's descriptor non-blocking (remembering its flags); False on failure."""
    cdef int flags
    if s.saved_flags >= 0:
        return True
    flags = fcntl(s.fd, F_GETFL)
    if flags < 0:
        return False
    if not flags & O_NONBLOCK:
        if fcntl(s.fd, F_SETFL, flags | O_NONBLOCK) < 0:
            return False
        s.saved_flags = flags
    return True


cdef void _restore(Side *s) noexcept nogil:
    if s.saved_flags >= 0:
        fcntl(s.fd, F_SETFL, s.saved_flags)
        s.saved_flags = -1


cdef inline size_t _pending(Direction *d) noexcept nogil:
    return d.in_pipe + (d.end - d.start)


cdef inline bint _again(int err) noexcept nogil:
    return err == EAGAIN or err == EWOULDBLOCK


cdef Py_ssize_t _read_in(Relay *r, Direction *d) noexcept nogil:
    """Read what the source has into the pipe or the buffer; what read() returns (errno)."""
    cdef Py_ssize_t n
    cdef Side *s = d.src
    if d.move == MOVE_SPLICE:
        n = splice(s.fd, NULL, d.pipe_w, NULL, PIPE_SIZE, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
        if n > 0:
            d.in_pipe = n
            return n
        if n == 0 or (errno != EINVAL and errno != ENOSYS):
            return n
        # This descriptor cannot be spliced: back to the buffer for good.
        d.move = MOVE_COPY
        d.no_splice = True
    if not s.plain:
        n = recv(s.fd, d.buf, _BUFFER_SIZE, MSG_DONTWAIT)
        if n >= 0 or errno != ENOTSOCK:
            if n > 0:
                d.start = 0
                d.end = n
            return n
        s.plain = True
        if not _nonblocking(s):
            return -1
    n = read(s.fd, d.buf, _BUFFER_SIZE)
    if n > 0:
        d.start = 0
        d.end = n
    return n


cdef Py_ssize_t _write_out(Direction *d) noexcept nogil:
    """Send what the pipe or the buffer holds; what write() returns (errno)."""
    cdef Py_ssize_t n
    cdef Side *s = d.dst
    if d.in_pipe:
        n = splice(d.pipe_r, NULL, s.fd, NULL, d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
        if n > 0:
            d.in_pipe -= n
        return n
    if not s.plain:
        n = send(s.fd, d.buf + d.start, d.end - d.start, MSG_DONTWAIT | MSG_NOSIGNAL)
        if n >= 0 or errno != ENOTSOCK:
            if n > 0:
                d.start += n
            return n
        s.plain = True
        if not _nonblocking(s):
            return -1
    n = write(s.fd, d.buf + d.start, d.end - d.start)
    if n > 0:
        d.start += n
    return n


cdef int _pump(Relay *r, Direction *d, size_t turn) noexcept nogil:
    """Move d's bytes until its source or destination would block, it ends, or ``turn`` bytes
    have gone; sets d.wait.  -1: an error (a reset) that ends the relay."""
    cdef Py_ssize_t n
    cdef size_t moved = 0
    cdef bint drained = False
    while True:
        if _pending(d):
            n = _write_out(d)
            if n < 0:
                if errno == EINTR:
                    continue
                if _again(errno):
                    d.wait = WAIT_WRITE
                    return 0
                return -1
            d.count += <size_t>n
            moved += <size_t>n
            r.moved = True
            if _pending(d):
                # A short write: the destination's buffer is full.
                d.wait = WAIT_WRITE
                return 0
            continue
        if d.eof:
            # A destination that cannot be shut down (not a socket, or gone) has nothing to
            # be told.
            shutdown(d.dst.fd, SHUT_WR)
            d.wait = WAIT_DONE
            return 0
        if drained or moved >= turn:
            # Level-triggered readiness reports what is left at the next turn.
            d.wait = WAIT_READ
            return 0
        n = _read_in(r, d)
        if n < 0:
            if errno == EINTR:
                continue
            if _again(errno):
                d.wait = WAIT_READ
                return 0
            return -1
        if n == 0:
            d.eof = True
            continue
        if d.move == MOVE_COPY:
            # A read short of the buffer took all there was: skip the read that would say so.
            drained = n < _BUFFER_SIZE
            if not drained and r.splice_mode == _SPLICE_AUTO and not d.no_splice:
                d.want_splice = True
        else:
            drained = n < PIPE_SIZE


cdef inline bint _ended(Relay *r) noexcept nogil:
    return r.failed or (r.dir[0].wait == WAIT_DONE and r.dir[1].wait == WAIT_DONE)


cdef void _on_event(Relay *r, int fd, uint32_t events, size_t turn) noexcept nogil:
    """fd (one of the two sides) reported ``events`` (epoll bits): move what can be moved."""
    cdef Direction *d
    cdef int i
    if events & EPOLLERR:
        r.failed = True
        return
    for i in range(2):
        d = &r.dir[i]
        if d.wait == WAIT_READ and d.src.fd == fd and events & (EPOLLIN | EPOLLHUP) or \
                d.wait == WAIT_WRITE and d.dst.fd == fd and events & (EPOLLOUT | EPOLLHUP):
            if _pump(r, d, turn) < 0:
                r.failed = True
                return
    if events & EPOLLHUP:
        # Hung up while the relay may still write to it (only a reset shuts that side down):
        # whatever waits to go there cannot be delivered.
        for i in range(2):
            d = &r.dir[i]
            if d.dst.fd == fd and d.wait != WAIT_DONE:
                r.failed = True
                return


cdef inline uint32_t _wanted(Relay *r, int i) noexcept nogil:
    """The events side i waits for: readable for the direction out of it, writable for the
    direction into it."""
    return (EPOLLIN if r.dir[i].wait == WAIT_READ else 0) | \
        (EPOLLOUT if r.dir[1 - i].wait == WAIT_WRITE else 0)


cdef int _open(Relay *r, int fd_a, int fd_b, int splice_mode) except -1:
    cdef int i
    cdef Direction *d
    if fd_a < 0 or fd_b < 0:
        raise ValueError("the relay needs two open sockets")
    if fd_a == fd_b:
        raise ValueError("the relay needs two different sockets")
    r.side[0].fd = fd_a
    r.side[1].fd = fd_b
    r.splice_mode = splice_mode if CYS_HAVE_SPLICE else _SPLICE_NEVER
    r.failed = False
    r.moved = False
    for i in range(2):
        r.side[i].plain = False
        r.side[i].saved_flags = -1
        d = &r.dir[i]
        d.src = &r.side[i]
        d.dst = &r.side[1 - i]
        d.buf = NULL
        d.start = d.end = 0
        d.pipe_r = d.pipe_w = -1
        d.in_pipe = 0
        d.move = MOVE_COPY
        d.wait = WAIT_READ
        d.eof = False
        d.want_splice = r.splice_mode == _SPLICE_ALWAYS
        d.no_splice = False
        d.count = 0
    for i in range(2):
        r.dir[i].buf = _take_buffer()
    return 0


cdef void _to_splice(Relay *r) noexcept:
    """Give the directions that asked for it a pipe (the GIL held: the pool)."""
    cdef Direction *d
    cdef int i
    for i in range(2):
        d = &r.dir[i]
        if not d.want_splice:
            continue
        d.want_splice = False
        if d.wait == WAIT_DONE or d.move == MOVE_SPLICE or d.no_splice or _pending(d):
            continue
        # splice() waits on a blocking socket whatever its flags say.
        if not (_nonblocking(d.src) and _nonblocking(d.dst) and _take_pipe(d)):
            d.no_splice = True
            continue
        d.move = MOVE_SPLICE


cdef void _close(Relay *r) noexcept:
    cdef int i
    for i in range(2):
        _give_buffer(r.dir[i].buf)
        r.dir[i].buf = NULL
        _give_pipe(&r.dir[i])
    for i in range(2):
        _restore(&r.side[i])


cdef int _fileno(obj) except -1:
    if isinstance(obj, int):
        return obj
    return obj.fileno()


# -- in a plain thread --------------------------------------------------------------------------

def relay_in_thread(a, b, idle_timeout=None, int splice_mode=_SPLICE_AUTO):
    """Relay between a and b (sockets, or anything with fileno()) in this thread, waiting in
    poll() with the GIL released; (bytes a->b, bytes b->a).  idle_timeout: seconds or None,
    already checked."""
    cdef Relay r
    cdef pollfd pfds[2]
    cdef double idle = -1.0 if idle_timeout is None else idle_timeout
    cdef double last, wait
    cdef int i, n, err = 0
    cdef uint32_t want, ev
    cdef short rev
    _open(&r, _fileno(a), _fileno(b), splice_mode)
    try:
        last = _now() if idle >= 0 else 0.0
        while not _ended(&r):
            if r.dir[0].want_splice or r.dir[1].want_splice:
                _to_splice(&r)
            for i in range(2):
                want = _wanted(&r, i)
                pfds[i].fd = r.side[i].fd
                pfds[i].events = (POLLIN if want & EPOLLIN else 0) | \
                    (POLLOUT if want & EPOLLOUT else 0)
                pfds[i].revents = 0
            wait = -1.0
            if idle >= 0:
                wait = last + idle - _now()
                if wait <= 0:
                    break
            with nogil:
                n = poll(pfds, 2, _timeout_ms(wait))
                if n < 0:
                    err = errno
            if n < 0:
                if err == EINTR:
                    PyErr_CheckSignals()
                    continue
                raise_errno(err)
            if n == 0:
                continue
            r.moved = False
            with nogil:
                for i in range(2):
                    rev = pfds[i].revents
                    if rev and not _ended(&r):
                        ev = (EPOLLIN if rev & POLLIN else 0) | \
                            (EPOLLOUT if rev & POLLOUT else 0) | \
                            (EPOLLERR if rev & (POLLERR | POLLNVAL) else 0) | \
                            (EPOLLHUP if rev & POLLHUP else 0)
                        # No other greenlet to be fair to: a turn as long as it goes.
                        _on_event(&r, pfds[i].fd, ev, <size_t>-1)
            if r.moved and idle >= 0:
                last = _now()
    finally:
        _close(&r)
    return r.dir[0].count, r.dir[1].count


# -- on a greenlet hub --------------------------------------------------------------------------

@cython.final
cdef class _HubRelay(FdHandler):
    """One relay on a hub: the hub's dispatch calls on_event() for both descriptors."""
    cdef Relay r
    cdef Hub hub
    cdef object glet            # the parked caller
    cdef bint attached
    cdef bint woken
    cdef double last            # when bytes last moved (idle timeout)
    cdef bint timed

    cdef int on_event(self, int fd, uint32_t events) except -1:
        _on_event(&self.r, fd, events, _TURN_BYTES)
        if self.r.moved:
            self.r.moved = False
            if self.timed:
                self.last = _now()
        if self.r.dir[0].want_splice or self.r.dir[1].want_splice:
            _to_splice(&self.r)
        if _ended(&self.r):
            self.finish()
            return 0
        try:
            self.hub.watch(self.r.side[0].fd, _wanted(&self.r, 0))
            self.hub.watch(self.r.side[1].fd, _wanted(&self.r, 1))
        except OSError:
            # epoll refuses a descriptor closed behind the relay's back: the relay is over.
            self.r.failed = True
            self.finish()
        return 0

    cdef int on_forget(self, int fd) except -1:
        # Closed (or replaced) behind the relay's back: ends it.
        self.r.failed = True
        self.finish()
        return 0

    cdef void finish(self) noexcept:
        if self.attached:
            self.attached = False
            self.hub.detach(self.r.side[0].fd)
            self.hub.detach(self.r.side[1].fd)
        if not self.woken:
            self.woken = True
            try:
                self.hub.ready.append((self.glet, None))
            except BaseException:
                pass


def relay_on_hub(Hub hub, a, b, idle_timeout=None, int splice_mode=_SPLICE_AUTO):
    """Relay between a and b inside ``hub`` (this thread's), the calling greenlet parked until
    both directions have ended; (bytes a->b, bytes b->a)."""
    cdef _HubRelay h = _HubRelay()
    cdef double idle = -1.0 if idle_timeout is None else idle_timeout
    cdef double deadline
    _open(&h.r, _fileno(a), _fileno(b), splice_mode)
    try:
        h.hub = hub
        h.glet = hub.current()
        h.timed = idle >= 0
        h.last = _now() if h.timed else 0.0
        hub.attach(h.r.side[0].fd, h)
        try:
            hub.attach(h.r.side[1].fd, h)
        except BaseException:
            hub.detach(h.r.side[0].fd)
            raise
        h.attached = True
        if h.r.dir[0].want_splice or h.r.dir[1].want_splice:
            _to_splice(&h.r)
        hub.watch(h.r.side[0].fd, EPOLLIN)
        hub.watch(h.r.side[1].fd, EPOLLIN)
        while not h.woken:
            deadline = h.last + idle if h.timed else -1.0
            if h.timed and _now() >= deadline:
                break
            hub.park_until(deadline)
    finally:
        h.woken = True
        h.finish()
        _close(&h.r)
        h.glet = None
    return h.r.dir[0].count, h.r.dir[1].count
