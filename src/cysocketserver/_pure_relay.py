"""The relay in pure Python: the same seam and results as the compiled ``_relay``
(cysocketserver.relaying is the public front).

``relay_in_thread(a, b, idle_timeout, splice_mode)`` waits in ``select.poll()``;
``relay_on_hub(hub, a, b, idle_timeout, splice_mode)`` attaches both descriptors to the hub
(``Hub.attach``: the hub's dispatch calls ``on_event`` here, no greenlet switch per chunk) and
parks the caller until the end.  Both return (bytes a->b, bytes b->a).  Each direction copies
through a buffer; splice(2) is the compiled engine's (``splice_mode`` is accepted and ignored).
End of stream on one side is shutdown(SHUT_WR) on the other; an error or a reset on either
ends both.
"""
import os
import select
import socket
from time import monotonic

import _socket

__all__ = ["BUFFER_SIZE", "SPLICE_ALWAYS", "SPLICE_AUTO", "SPLICE_NEVER", "TURN_BYTES",
           "relay_in_thread", "relay_on_hub"]

SPLICE_NEVER = 0
SPLICE_AUTO = 1
SPLICE_ALWAYS = 2
BUFFER_SIZE = 65536
TURN_BYTES = 262144

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
_POLLERR = select.POLLERR | select.POLLNVAL
_POLLHUP = select.POLLHUP

_WAIT_READ, _WAIT_WRITE, _WAIT_DONE = 0, 1, 2
_ss = _socket.socket
_DONTWAIT = socket.MSG_DONTWAIT
_SEND_FLAGS = socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)


class _Side:
    """One descriptor, and how to read and write it without waiting."""

    __slots__ = ("fd", "sock", "saved_blocking")

    def __init__(self, obj):
        self.fd = obj if isinstance(obj, int) else obj.fileno()
        self.saved_blocking = None
        # A socket in blocking mode (or a GreenSocket, whose descriptor is non-blocking) takes
        # MSG_DONTWAIT; one with a timeout would wait in its own poll() first, so its
        # descriptor (non-blocking already) is read and written as a file, like anything else.
        self.sock = obj if isinstance(obj, _ss) and _ss.gettimeout(obj) in (None, 0.0) else None
        if self.sock is None and os.get_blocking(self.fd):
            self.saved_blocking = True
            os.set_blocking(self.fd, False)

    def read_into(self, view):
        if self.sock is not None:
            return _ss.recv_into(self.sock, view, 0, _DONTWAIT)
        return os.readv(self.fd, [view])

    def write(self, view):
        if self.sock is not None:
            return _ss.send(self.sock, view, _SEND_FLAGS)
        return os.write(self.fd, view)

    def restore(self):
        if self.saved_blocking:
            self.saved_blocking = None
            try:
                os.set_blocking(self.fd, True)
            except OSError:
                pass


def _shutdown_fd(fd):
    """shutdown(fd, SHUT_WR) of a descriptor known by number only."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return  # not a socket
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.detach()


class _Direction:
    __slots__ = ("src", "dst", "buf", "view", "start", "end", "wait", "eof", "count")

    def __init__(self, src, dst):
        self.src = src
        self.dst = dst
        self.buf = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.buf)
        self.start = self.end = 0
        self.wait = _WAIT_READ
        self.eof = False
        self.count = 0

    def pump(self, relay, turn):
        """Move bytes until the source or destination would block, the direction ends, or
        ``turn`` bytes have gone; False on an error (a reset) that ends the relay."""
        moved = 0
        drained = False
        while True:
            if self.start < self.end:
                try:
                    n = self.dst.write(self.view[self.start:self.end])
                except (BlockingIOError, InterruptedError):
                    self.wait = _WAIT_WRITE
                    return True
                except OSError:
                    return False
                self.start += n
                self.count += n
                moved += n
                relay.moved = True
                if self.start < self.end:
                    self.wait = _WAIT_WRITE
                    return True
                continue
            if self.eof:
                if self.dst.sock is not None:
                    try:
                        _ss.shutdown(self.dst.sock, socket.SHUT_WR)
                    except OSError:
                        pass
                else:
                    _shutdown_fd(self.dst.fd)
                self.wait = _WAIT_DONE
                return True
            if drained or moved >= turn:
                self.wait = _WAIT_READ
                return True
            try:
                n = self.src.read_into(self.view)
            except (BlockingIOError, InterruptedError):
                self.wait = _WAIT_READ
                return True
            except OSError:
                return False
            if n == 0:
                self.eof = True
                continue
            self.start, self.end = 0, n
            drained = n < BUFFER_SIZE


class _Relay:
    """Both directions between sides a and b, driven by readiness events."""

    def __init__(self, a, b):
        side_a = _Side(a)
        try:
            side_b = _Side(b)
        except BaseException:
            side_a.restore()
            raise
        if side_a.fd < 0 or side_b.fd < 0:
            self.sides = (side_a, side_b)
            self.close()
            raise ValueError("the relay needs two open sockets")
        if side_a.fd == side_b.fd:
            self.sides = (side_a, side_b)
            self.close()
            raise ValueError("the relay needs two different sockets")
        self.sides = (side_a, side_b)
        self.dirs = (_Direction(side_a, side_b), _Direction(side_b, side_a))
        self.failed = False
        self.moved = False

    def ended(self):
        return self.failed or (self.dirs[0].wait == _WAIT_DONE and self.dirs[1].wait == _WAIT_DONE)

    def on_event(self, fd, events, turn):
        """fd (a side's descriptor) reported ``events`` (poll bits)."""
        if events & _POLLERR:
            self.failed = True
            return
        for d in self.dirs:
            if (d.wait == _WAIT_READ and d.src.fd == fd and events & (POLLIN | _POLLHUP)) or \
                    (d.wait == _WAIT_WRITE and d.dst.fd == fd and events & (POLLOUT | _POLLHUP)):
                if not d.pump(self, turn):
                    self.failed = True
                    return
        if events & _POLLHUP:
            # Hung up while the relay may still write to it: nothing more can go there.
            for d in self.dirs:
                if d.dst.fd == fd and d.wait != _WAIT_DONE:
                    self.failed = True
                    return

    def wanted(self, i):
        """The events side i waits for (poll bits)."""
        return (POLLIN if self.dirs[i].wait == _WAIT_READ else 0) | \
            (POLLOUT if self.dirs[1 - i].wait == _WAIT_WRITE else 0)

    def counts(self):
        return self.dirs[0].count, self.dirs[1].count

    def close(self):
        for side in self.sides:
            side.restore()


def relay_in_thread(a, b, idle_timeout=None, splice_mode=SPLICE_AUTO):
    """Relay between a and b in this thread, waiting in poll(); (bytes a->b, bytes b->a)."""
    relay = _Relay(a, b)
    try:
        poller = select.poll()
        fds = [side.fd for side in relay.sides]
        for fd in fds:
            poller.register(fd, POLLIN)
        last = monotonic()
        while not relay.ended():
            for i, fd in enumerate(fds):
                poller.modify(fd, relay.wanted(i))
            if idle_timeout is None:
                timeout = None
            else:
                remaining = last + idle_timeout - monotonic()
                if remaining <= 0:
                    break
                timeout = max(1, int(remaining * 1000 + 0.999))
            events = poller.poll(timeout)
            relay.moved = False
            for fd, happened in events:
                if not relay.ended():
                    relay.on_event(fd, happened, float("inf"))
            if relay.moved:
                last = monotonic()
    finally:
        relay.close()
    return relay.counts()


class _HubRelay:
    """One relay on a hub: the hub's dispatch calls on_event() for both descriptors."""

    def __init__(self, hub, relay, glet):
        self.hub = hub
        self.relay = relay
        self.glet = glet
        self.attached = False
        self.woken = False
        self.last = monotonic()

    def on_event(self, fd, events):
        relay = self.relay
        relay.moved = False
        relay.on_event(fd, events, TURN_BYTES)
        if relay.moved:
            self.last = monotonic()
        if relay.ended():
            self.finish()
            return
        try:
            for i, side in enumerate(relay.sides):
                self.hub.watch(side.fd, relay.wanted(i))
        except (OSError, ValueError):
            relay.failed = True
            self.finish()

    def on_forget(self, fd):
        self.relay.failed = True
        self.finish()

    def finish(self):
        if self.attached:
            self.attached = False
            for side in self.relay.sides:
                self.hub.detach(side.fd)
        if not self.woken:
            self.woken = True
            self.hub.wake(self.glet)


def relay_on_hub(hub, a, b, idle_timeout=None, splice_mode=SPLICE_AUTO):
    """Relay between a and b inside ``hub`` (this thread's), the calling greenlet parked until
    both directions have ended; (bytes a->b, bytes b->a)."""
    from greenlet import getcurrent

    relay = _Relay(a, b)
    handler = _HubRelay(hub, relay, getcurrent())
    try:
        fd_a, fd_b = (side.fd for side in relay.sides)
        hub.attach(fd_a, handler)
        try:
            hub.attach(fd_b, handler)
        except BaseException:
            hub.detach(fd_a)
            raise
        handler.attached = True
        hub.watch(fd_a, POLLIN)
        hub.watch(fd_b, POLLIN)
        while not handler.woken:
            deadline = -1.0 if idle_timeout is None else handler.last + idle_timeout
            if idle_timeout is not None and monotonic() >= deadline:
                break
            hub.park_until(deadline)
    finally:
        handler.woken = True
        handler.finish()
        relay.close()
    return relay.counts()
