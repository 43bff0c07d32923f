"""The greenlet hub in pure Python: the same seam as the compiled ``_hub``, on ``selectors``
(on Linux, the epoll set of ``_pure_epoll``).

One hub per OS thread.  The hub runs in a greenlet of its own; a greenlet that must wait for a
descriptor, a timer or another thread registers what it waits for and switches to the hub,
which switches back to it when that happens.  Only the hub ever switches into a waiting
greenlet, so whichever greenlet parks, control always comes back through the hub.

The seam (identical in both engines):

``Hub()``
    ``wait_fd(fd, events, deadline)`` park until ``fd`` is ready for ``events`` (POLLIN/POLLOUT)
    or until ``deadline`` (time.monotonic() seconds; negative: none); True if it timed out.
    The deadline is a number: ``None`` is refused with TypeError by both hubs (a
    negative number means no deadline).  A descriptor that cannot be polled (a regular file)
    is ready at once.  ``forget_fd(fd)`` before the descriptor is closed: whoever waits on it
    is woken once (even a greenlet waiting to read and to write).  ``set_exclusive(fd)``: wait
    for reading ``fd`` with an exclusive wake-up (EPOLLEXCLUSIVE, for a listener other processes
    share: of the processes waiting for it, one wakes) until ``forget_fd(fd)``; without epoll,
    the ordinary way.  ``sleep(seconds)``.  ``park()``: switch
    to the hub until someone calls ``wake(greenlet)`` (or ``wake_threadsafe`` from another
    thread).  ``spawn(fn, *args)``: a new greenlet, started by the hub.  ``kill(greenlet)``:
    throw GreenletExit into it, from the hub.  ``call_threadsafe(fn, *args)``: run ``fn`` in the
    hub from any thread.  ``block_warning``: seconds (None: off) a greenlet may keep the hub
    before a warning says so.  ``thread_ident``.
    ``io_done()``: an I/O operation of the running greenlet completed without waiting; after
    ``io_budget`` of them in one turn (``_hubcommon.DEFAULT_IO_BUDGET``, or the
    CYSOCKETSERVER_HUB_IO_BUDGET environment variable; 0: no limit) the greenlet gives way to
    the others through the ready queue.  A turn starts whenever the hub switches to a greenlet.
    The compiled streams count their own operations through ``_hub.hub_io_done``.
    ``attach(fd, handler, events)``/``watch(fd, events)``/``detach(fd)``: the hub's dispatch
    calls ``handler.on_event(fd, events)`` itself for an attached descriptor (the relay moves
    its bytes so, with no greenlet switch; the compiled hub takes a ``_hub.FdHandler`` from C),
    and ``park_until(deadline)`` parks the caller meanwhile (True: the deadline passed).
    ``close()``: close the hub's descriptors.  ``abandon()``: in the child of fork(), let go
    of the parent's hub without touching the parent's epoll set (green/hub.py calls it).

Every park may return early (a stale wake-up): callers re-check what they waited for.  No
single wait of the hub is longer than ``_hubcommon.MAX_WAIT_SECONDS``.
"""
import heapq
import os
import selectors
import sys
import threading
import traceback
import warnings
from collections import deque
from time import monotonic

from ._hubcommon import (
    MAX_WAIT_SECONDS, POLLIN, POLLOUT, HubBlockedWarning, check_io_budget, describe_block,
    io_budget_from_env,
)
from ._pure_epoll import new_selector

try:
    from greenlet import GreenletExit, getcurrent, greenlet
except ImportError:  # reported when a hub is made (greenlets.py says how to get it)
    greenlet = getcurrent = None
    GreenletExit = None

__all__ = ["Hub", "HubBlockedWarning"]

TIMED_OUT = object()
# A turn with no I/O budget: never spent in practice (and a give-way would be harmless).
_UNLIMITED_TURN = 0x7FFFFFFF


class _Throw:
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc


def _root(glet):
    while glet.parent is not None:
        glet = glet.parent
    return glet


def _seconds(value):
    """A deadline as the compiled hub's ``double`` argument takes it: a real number."""
    if type(value) is float:
        return value
    if value is None or isinstance(value, (str, bytes, bytearray)):
        raise TypeError("must be real number, not %s" % type(value).__name__)
    return float(value)


class _Fd:
    __slots__ = ("reader", "writer", "mask", "exclusive", "handler")

    def __init__(self):
        self.reader = None
        self.writer = None
        self.handler = None      # attached code that takes the events itself (see attach)
        self.mask = 0
        self.exclusive = False   # registered with EPOLLEXCLUSIVE (see set_exclusive)


class Hub:

    def __init__(self):
        if greenlet is None:
            raise ImportError("the greenlet package is needed: pip install 'greenlet>=3'",
                              name="greenlet")
        self.thread_ident = threading.get_ident()
        self.block_warning = None
        self._selector = new_selector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._fds = {}
        self._timers = []          # heap of [when, seq, glet, value, active]
        self._cancelled = 0
        self._seq = 0
        self._ready = deque()      # (greenlet, value) to switch to
        self._calls = deque()      # (fn, args) from any thread
        self._abandoned = False    # see abandon()
        self.io_budget = io_budget_from_env()
        self.root = _root(getcurrent())
        self.glet = greenlet(self._run, self.root)

    # -- fairness -------------------------------------------------------------------------------

    @property
    def io_budget(self):
        """I/O operations a greenlet may complete in one turn before it gives way (0: no limit)."""
        return self._io_budget

    @io_budget.setter
    def io_budget(self, value):
        self._io_budget = check_io_budget(value)
        self._io_turn = value if value > 0 else _UNLIMITED_TURN
        self._io_left = self._io_turn

    def io_done(self):
        """Count an I/O operation that did not wait; give way when the turn's budget is spent."""
        self._io_left -= 1
        if self._io_left <= 0:
            self._give_way()

    def _give_way(self):
        self._io_left = self._io_turn
        cur = getcurrent()
        if cur is self.glet or threading.get_ident() != self.thread_ident:
            return  # the hub's own calls (or a socket used from another thread)
        self._ready.append((cur, None))
        self.glet.switch()

    # -- parking ------------------------------------------------------------------------------

    def park(self):
        cur = getcurrent()
        if cur is self.glet:
            raise RuntimeError("the hub itself cannot wait")
        return self.glet.switch()

    def wake(self, glet, value=None):
        self._ready.append((glet, value))

    def wake_threadsafe(self, glet):
        self.call_threadsafe(self.wake, glet)

    def call_threadsafe(self, fn, *args):
        self._calls.append((fn, args))
        wake_w = self._wake_w
        if wake_w < 0:
            return  # closed: the hub is gone
        try:
            os.write(wake_w, b"\0")
        except OSError:
            pass  # full: a wake-up is pending already

    def spawn(self, fn, *args):
        glet = greenlet(lambda: fn(*args), self.glet)
        self._ready.append((glet, None))
        return glet

    def kill(self, glet, exc=None):
        self._ready.append((glet, _Throw(exc if exc is not None else GreenletExit())))

    def _add_timer(self, when, glet, value):
        self._seq += 1
        entry = [when, self._seq, glet, value, True]
        heapq.heappush(self._timers, entry)
        return entry

    def _cancel(self, entry):
        if entry[4]:
            entry[4] = False
            self._cancelled += 1
            if self._cancelled > 256 and self._cancelled * 2 > len(self._timers):
                self._timers = [t for t in self._timers if t[4]]
                heapq.heapify(self._timers)
                self._cancelled = 0

    def sleep(self, seconds):
        cur = getcurrent()
        if cur is self.glet:
            raise RuntimeError("the hub itself cannot sleep")
        if seconds <= 0:
            self._ready.append((cur, None))
            self.glet.switch()
            return
        deadline = monotonic() + seconds
        while True:
            entry = self._add_timer(deadline, cur, TIMED_OUT)
            try:
                value = self.glet.switch()
            finally:
                self._cancel(entry)
            if value is TIMED_OUT or monotonic() >= deadline:
                return

    # -- descriptors ----------------------------------------------------------------------------

    def wait_fd(self, fd, events, deadline):
        deadline = _seconds(deadline)
        cur = getcurrent()
        if cur is self.glet:
            raise RuntimeError("the hub itself cannot wait for a descriptor")
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        ent = self._fds.get(fd)
        if ent is None:
            ent = self._fds[fd] = _Fd()
        if ent.handler is not None:
            raise RuntimeError(f"fd {fd} is being relayed by the hub")
        if events & POLLIN:
            if ent.reader is not None and ent.reader is not cur:
                raise RuntimeError("another greenlet is already waiting to read from fd %d" % fd)
            ent.reader = cur
        if events & POLLOUT:
            if ent.writer is not None and ent.writer is not cur:
                raise RuntimeError("another greenlet is already waiting to write to fd %d" % fd)
            ent.writer = cur
        timer = None
        try:
            try:
                self._interest(fd, ent)
            except PermissionError:
                return False  # not pollable (a regular file): always ready
            if deadline >= 0:
                timer = self._add_timer(deadline, cur, TIMED_OUT)
            value = self.glet.switch()
        finally:
            if ent.reader is cur:
                ent.reader = None
            if ent.writer is cur:
                ent.writer = None
            if timer is not None:
                self._cancel(timer)
        return value is TIMED_OUT

    def _interest(self, fd, ent):
        want = (selectors.EVENT_READ if ent.reader is not None else 0) | \
               (selectors.EVENT_WRITE if ent.writer is not None else 0)
        # Keep what is registered (the next wait is likely the same), add what is missing.
        mask = ent.mask | want
        if mask == ent.mask:
            return
        if ent.mask:
            self._selector.modify(fd, mask, ent)
        else:
            self._selector.register(fd, mask, ent, exclusive=ent.exclusive)
        ent.mask = mask

    def _drop_interest(self, fd, ent):
        """Stop watching fd (the selector may already have let go of a closed one)."""
        if ent.mask:
            ent.mask = 0
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass

    def set_exclusive(self, fd):
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        ent = self._fds.get(fd)
        if ent is None:
            ent = self._fds[fd] = _Fd()
        if ent.exclusive:
            return
        ent.exclusive = True
        # Registered the ordinary way: removed, so that the next wait adds it exclusively.
        self._drop_interest(fd, ent)

    def forget_fd(self, fd):
        ent = self._fds.pop(fd, None)
        if ent is None:
            return
        self._drop_interest(fd, ent)
        if ent.handler is not None:
            handler, ent.handler = ent.handler, None
            handler.on_forget(fd)
        # Whoever still waits on it learns at its next syscall that it is gone; a greenlet
        # waiting to read and to write is woken once (a second wake-up would end its next,
        # unrelated park early).
        if ent.reader is not None:
            self._ready.append((ent.reader, None))
        if ent.writer is not None and ent.writer is not ent.reader:
            self._ready.append((ent.writer, None))

    # -- attached handlers ----------------------------------------------------------------------

    def attach(self, fd, handler, events=0):
        """Send fd's events to ``handler.on_event(fd, events)`` (POLLIN/POLLOUT bits), called
        by the hub's dispatch itself (it must not wait), until detach(fd); forget_fd(fd) calls
        ``handler.on_forget(fd)``.  ``watch()`` says which events."""
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        ent = self._fds.get(fd)
        if ent is None:
            ent = self._fds[fd] = _Fd()
        if ent.handler is not None or ent.reader is not None or ent.writer is not None:
            raise RuntimeError(f"fd {fd} is in use by another greenlet")
        if ent.exclusive:
            raise ValueError(f"fd {fd} is a shared listener")
        ent.handler = handler
        self.watch(fd, events)

    def watch(self, fd, events):
        """Report exactly ``events`` (POLLIN/POLLOUT) of an attached fd."""
        ent = self._fds.get(fd)
        if ent is None or ent.handler is None:
            return
        mask = (selectors.EVENT_READ if events & POLLIN else 0) | \
               (selectors.EVENT_WRITE if events & POLLOUT else 0)
        if mask == ent.mask:
            return
        if not mask:
            self._selector.unregister(fd)
        elif ent.mask:
            self._selector.modify(fd, mask, ent)
        else:
            self._selector.register(fd, mask, ent)
        ent.mask = mask

    def detach(self, fd):
        ent = self._fds.get(fd)
        if ent is None or ent.handler is None:
            return
        ent.handler = None
        self._drop_interest(fd, ent)
        if ent.reader is None and ent.writer is None:
            del self._fds[fd]

    def park_until(self, deadline):
        """Park the running greenlet until woken; True if the deadline (< 0: none) passed."""
        cur = getcurrent()
        if cur is self.glet:
            raise RuntimeError("the hub itself cannot wait")
        timer = self._add_timer(deadline, cur, TIMED_OUT) if deadline >= 0 else None
        try:
            value = self.glet.switch()
        finally:
            if timer is not None:
                self._cancel(timer)
        return value is TIMED_OUT

    # -- the loop -----------------------------------------------------------------------------

    def _run(self):
        while True:
            try:
                self._run_once()
            except BaseException as exc:
                # A signal handler's exception (Ctrl-C) raised while the hub waited: it belongs
                # to the thread's own code.
                self._forward(exc)

    def _forward(self, exc):
        if GreenletExit is not None and isinstance(exc, GreenletExit):
            return
        if self.root.dead:
            raise exc
        self.root.throw(exc)

    def _switch(self, glet, value):
        if glet.dead:
            return
        limit = self.block_warning
        if limit is not None:
            start = monotonic()
        self._io_left = self._io_turn
        try:
            if type(value) is _Throw:
                glet.throw(value.exc)
            elif value is None:
                glet.switch()
            else:
                glet.switch(value)
        except (GreenletExit, SystemExit):
            pass
        except KeyboardInterrupt as exc:
            self._forward(exc)
        except BaseException:
            print("Exception in a greenlet on the hub:", file=sys.stderr)
            traceback.print_exc()
        if self._abandoned:
            raise SystemExit(0)  # back in the child of fork(): see abandon()
        if limit is not None:
            held = monotonic() - start
            if held > limit:
                warnings.warn(describe_block(glet, held), HubBlockedWarning, stacklevel=1)

    def _run_once(self):
        if self._abandoned:
            raise SystemExit(0)
        calls = self._calls
        # The calls queued so far; those they queue run at the next turn, as in the compiled hub.
        for _ in range(len(calls)):
            fn, args = calls.popleft()
            fn(*args)
        timers = self._timers
        if timers:
            now = monotonic()
            while timers and (timers[0][0] <= now or not timers[0][4]):
                entry = heapq.heappop(timers)
                if entry[4]:
                    entry[4] = False
                    self._ready.append((entry[2], entry[3]))
                else:
                    self._cancelled -= 1
        ready = self._ready
        for _ in range(len(ready)):
            glet, value = ready.popleft()
            self._switch(glet, value)
        if ready or calls:
            timeout = 0
        elif timers:
            timeout = min(max(0.0, timers[0][0] - monotonic()), MAX_WAIT_SECONDS)
        else:
            timeout = None
        for key, mask in self._selector.select(timeout):
            ent = key.data
            if ent is None:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except OSError:
                    pass
                continue
            if ent.handler is not None:
                # Attached code moves the bytes here, in the hub: no greenlet switch.
                ent.handler.on_event(key.fd, (POLLIN if mask & selectors.EVENT_READ else 0) |
                                     (POLLOUT if mask & selectors.EVENT_WRITE else 0))
                continue
            unwanted = 0
            if mask & selectors.EVENT_READ:
                if ent.reader is not None:
                    glet, ent.reader = ent.reader, None
                    self._ready.append((glet, None))
                else:
                    unwanted |= selectors.EVENT_READ
            if mask & selectors.EVENT_WRITE:
                if ent.writer is not None:
                    glet, ent.writer = ent.writer, None
                    self._ready.append((glet, None))
                else:
                    unwanted |= selectors.EVENT_WRITE
            if unwanted and key.fd in self._fds:
                # Nobody waits for that event any more: stop hearing about it.
                ent.mask &= ~unwanted
                try:
                    if ent.mask:
                        self._selector.modify(key.fd, ent.mask, ent)
                    else:
                        self._selector.unregister(key.fd)
                except (KeyError, ValueError, OSError):
                    ent.mask = 0

    def abandon(self):
        """In the child of fork(): let go of the parent's hub.

        The epoll set and the wake-up pipe are the parent's too: close this process's copies
        only (never an unregister, which would change the parent's interest set), and never
        run the parent's greenlets here.  If the hub is resumed all the same (a greenlet that
        called fork() ended in the child and returned to it), the child's main greenlet gets
        SystemExit, as a thread that forked would simply have ended.
        """
        self._abandoned = True
        self._ready.clear()
        self._calls.clear()
        self._fds = {}
        self.close()

    def close(self):
        """Close the hub's descriptors (when its thread has ended)."""
        if self._wake_r < 0:
            return
        self._selector.close()
        fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
