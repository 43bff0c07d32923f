"""``HubWaiter``: how a greenlet server's serve loop waits on its listener.

The listener is waited on through the hub of the thread that serves, so the handlers'
greenlets run while the loop waits for the next client.
"""
import threading
from time import monotonic

from greenlet import getcurrent

from .._loopcommon import LISTENER_READY, WOKEN
from .hub import POLLIN, get_hub

__all__ = ["HubWaiter"]


class HubWaiter:
    """The serve loop's waiter (``core.seam.Waiter``) for a greenlet server: the listener is
    waited on through the hub of the thread that serves, so the handlers' greenlets run
    meanwhile, and a wake-up from another thread reaches the hub through its wake-up
    descriptor."""

    # While the listener is not watched (the model is full, or accept() is backing off), the
    # loop naps in slices this long so that a wake-up is noticed.
    NAP = 0.02

    def __init__(self):
        self.hub = None
        self.fd = -1
        self.exclusive = False  # the listener is in the hub's epoll set with EPOLLEXCLUSIVE
        self.watching = False
        self.waiting = None     # the greenlet inside wait()
        self.woken = False

    def set_listener(self, fd, exclusive=False):
        hub = get_hub()
        if hub is not self.hub or fd != self.fd or exclusive != self.exclusive:
            self.forget()
            self.hub = hub
            self.fd = fd
            self.exclusive = exclusive
            self.watching = False
        self.watch()

    def watch(self):
        if not self.watching and self.exclusive:
            self.hub.set_exclusive(self.fd)
        self.watching = True

    def unwatch(self):
        if self.watching and self.exclusive:
            # Out of the hub's epoll set while not waited for: the hub may still wait for its
            # handlers' descriptors, and would take the one wake-up meant for an idle process.
            self.forget()
        self.watching = False

    def wait(self, timeout):
        hub = self.hub
        self.woken = False
        self.waiting = getcurrent()
        try:
            if self.watching:
                deadline = -1.0 if timeout is None else monotonic() + timeout
                timed_out = hub.wait_fd(self.fd, POLLIN, deadline)
                if self.woken:
                    return WOKEN
                return 0 if timed_out else LISTENER_READY
            hub.sleep(self.NAP if timeout is None else min(self.NAP, timeout))
            return WOKEN if self.woken else 0
        finally:
            self.waiting = None

    def wake(self):
        self.woken = True
        waiting, hub = self.waiting, self.hub
        if waiting is None or hub is None:
            return
        if hub.thread_ident == threading.get_ident():
            if waiting is not getcurrent():
                hub.wake(waiting)
        else:
            hub.wake_threadsafe(waiting)

    def forget(self):
        if self.hub is not None and self.fd >= 0:
            self.hub.forget_fd(self.fd)

    def close(self):
        self.forget()
        self.fd = -1
